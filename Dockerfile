# One image for the API and the workers; TensorFlow is not installed (generation is numpy).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY api api
COPY worker worker
COPY shared shared
COPY training training
COPY models models
RUN pip install --no-deps .
# Compile the engine's kernels now, into a cache the workers (user nobody) read and extend.
RUN python -m shared.engine.compile_cache && chown -R nobody /usr/local/var/lstmgen-numba
USER nobody
