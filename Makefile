# One entry point for setting up, running, testing and checking lstmgen.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# What each purpose needs: running (requirements.txt), training (+ TensorFlow), developing
# (+ test and check tools). Each stamp records that its set is installed in .venv.
RUN_STAMP := $(VENV)/.installed-run
TRAIN_STAMP := $(VENV)/.installed-train
DEV_STAMP := $(VENV)/.installed-dev
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install install-train run test test-fast check lint format bench default-model clean

$(RUN_STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	$(PY) -m shared.engine.compile_cache
	touch $@

$(TRAIN_STAMP): $(RUN_STAMP) requirements-train.txt
	$(PIP) -r requirements-train.txt
	touch $@

$(DEV_STAMP): $(TRAIN_STAMP) requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

install: $(DEV_STAMP)  ## Create .venv with everything: running, training, tests and checks.

install-train: $(TRAIN_STAMP)  ## Add TensorFlow to .venv, for `lstmgen train` and `export`.

run: $(RUN_STAMP)  ## Start Redis (unless LSTMGEN_REDIS_URL is set), workers and the API; Ctrl-C stops all.
	$(PY) -m shared.engine.compile_cache
	$(PY) -m scripts.run

test: $(DEV_STAMP)  ## Run every test: unit, then integration (real workers, API, browser).
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(DEV_STAMP)  ## Run the unit tests only: in-process, a real redis-server at most.
	$(PY) -m pytest -q -p no:cacheprovider -n auto tests/unit

check: $(DEV_STAMP)  ## Lint, format check and type check.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy api worker shared training scripts bench

format: $(DEV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(DEV_STAMP)  ## Run every benchmark (minutes).
	PYTHONPATH=. $(PY) bench/engine.py
	PYTHONPATH=. $(PY) bench/batching.py
	PYTHONPATH=. $(PY) bench/service.py
	PYTHONPATH=. $(PY) bench/load.py
	PYTHONPATH=. $(PY) bench/footprint.py
	PYTHONPATH=. $(PY) bench/end_to_end.py
	PYTHONPATH=. $(PY) bench/api_cost.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

# models/default: a 2x192 LSTM trained on 1.5 MB of this Python's own standard library source.
default-model: $(TRAIN_STAMP)  ## Retrain the committed models/default (12-30 minutes on 2 cores).
	$(PY) -m training.stdlib_corpus build/stdlib.txt --max-chars 1500000
	$(PY) -m shared.client.cli train build/stdlib.txt --out models/default --layers 192,192 \
		--embedding-dim 64 --seq-len 100 --batch-size 64 --epochs 8 --learning-rate 0.003 \
		--validation-split 0.05 --random-seed 1
