# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/tiny.yaml
MLFLOW_STORE ?= $(CURDIR)/mlruns
UI_PORT ?= 5000

.PHONY: install demo test test-fast bench serve ui clean tokenizer

# torch==2.13.0 goes in first: every machine here has that wheel locally, and installing it
# before the rest stops a dependency from pulling a multi-GB CUDA build of a newer torch.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) jobs/demo.py --config $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest tests -q

test-fast: $(STAMP)
	$(PY) -m pytest tests -q -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/prepare_throughput.py
	$(PY) benchmarks/train_throughput.py

serve: $(STAMP)
	$(VENV)/bin/serve run serve/config.yaml

ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_STORE) --host 127.0.0.1 --port $(UI_PORT)

# Rebuild the bundled offline tokenizer from the bundled corpus (the result is committed).
tokenizer: $(STAMP)
	$(PY) scripts/train_tokenizer.py

clean:
	rm -rf $(VENV) runs mlruns outputs data/prepared .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
