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
USER nobody
