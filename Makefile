# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/tiny.yaml
# The embedded MLflow store the jobs write to (tracking.py): SQLite runs + a local artifact folder.
MLFLOW_DB ?= sqlite:///$(CURDIR)/mlruns/mlflow.db
MLFLOW_ARTIFACTS ?= $(CURDIR)/mlruns/artifacts
UI_PORT ?= 5000
SERVE_PORT ?= 8000
MODEL_URI ?= models:/multi-task-kobart-tiny@candidate

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
	$(PY) -m pytest tests -q --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest tests -q -m "not slow" --durations=15

bench: $(STAMP)
	$(PY) benchmarks/prepare_throughput.py
	$(PY) benchmarks/train_throughput.py
	nice $(PY) benchmarks/serve_throughput.py

# Ray Serve on http://127.0.0.1:8000 (README "Serving with Ray Serve"): `serve run serve/config.yaml`,
# the fan-out shape (Ingress -> Encoder -> 4 decoders), serving models:/multi-task-kobart-tiny@candidate
# from the project's MLflow store (what `make demo` registers). SERVE_CONFIG=serve/config-colocated.yaml
# runs the one-replica shape; MLFLOW_DB points at another store. Ctrl-C stops it.
serve: $(STAMP)
	MLFLOW_TRACKING_URI=$(MLFLOW_DB) $(VENV)/bin/serve run $(or $(SERVE_CONFIG),serve/config.yaml)

ui: $(STAMP)
	mkdir -p mlruns
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_DB) --default-artifact-root $(MLFLOW_ARTIFACTS) \
	  --host 127.0.0.1 --port $(UI_PORT)

# Rebuild the bundled offline tokenizer from the bundled corpus (the result is committed).
tokenizer: $(STAMP)
	$(PY) scripts/train_tokenizer.py

clean:
	rm -rf $(VENV) runs mlruns outputs data/prepared .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
