# One entry point for setting up, running, testing and checking lstmgen.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast check lint format bench default-model clean

$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install everything.

run: $(STAMP)  ## Start Redis (unless LSTMGEN_REDIS_URL is set), workers and the API; Ctrl-C stops all.
	$(PY) scripts/run.py

test: $(STAMP)  ## Run every test: unit, then integration (real workers, API, browser).
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)  ## Run the unit tests only: in-process, a real redis-server at most.
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

check: $(STAMP)  ## Lint, format check and type check.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy api worker shared training scripts bench

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)  ## Run every benchmark (minutes).
	PYTHONPATH=. $(PY) bench/engine.py
	PYTHONPATH=. $(PY) bench/batching.py
	PYTHONPATH=. $(PY) bench/service.py
	PYTHONPATH=. $(PY) bench/load.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

# models/default: a 2x192 LSTM trained on 1.5 MB of this Python's own standard library source.
default-model: $(STAMP)  ## Retrain the committed models/default (12-30 minutes on 2 cores).
	$(PY) -m training.stdlib_corpus build/stdlib.txt --max-chars 1500000
	$(PY) -m shared.client.cli train build/stdlib.txt --out models/default --layers 192,192 \
		--embedding-dim 64 --seq-len 100 --batch-size 64 --epochs 8 --learning-rate 0.003 \
		--validation-split 0.05 --random-seed 1
