# `make run` and `make test` set themselves up: virtualenv, pinned dependencies, data.
# Re-running them reinstalls nothing unless pyproject.toml or constraints.txt changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: run test test-fast setup data postgres lint bench sweep clean docs

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing torch (CPU build from this machine's wheel cache when present)"
	@$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	@echo "installing latentatlas and its pinned dependencies"
	@$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist, when we may install packages.
data:
	@if [ ! -d $(FMNIST_DIR) ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  { $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -qq >/dev/null 2>&1 && \
	      $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }; } || \
	  echo "warning: could not install dataset-fashion-mnist; the main job falls back to scikit-learn digits"; \
	fi

# PostgreSQL for the tests of a lab's tracking server (tests/test_tracking_server.py), when we
# may install packages; without it those tests skip and say why.
postgres:
	@if ! command -v initdb >/dev/null 2>&1 && [ ! -d /usr/lib/postgresql ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
	  { $$SUDO apt-get install -y -qq postgresql >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -qq >/dev/null 2>&1 && \
	      $$SUDO apt-get install -y -qq postgresql >/dev/null 2>&1; }; } || \
	  echo "warning: could not install postgresql; the tracking-server tests will skip"; \
	fi

run: setup data
	$(VENV)/bin/latentatlas run

test: setup data postgres
	$(PY) -m pytest -q

# The inner loop of a change: the suite without its slow and server tests (a few minutes);
# `make test` (what CI runs) is the whole suite.
test-fast: setup data
	$(PY) -m pytest -q -m "not slow and not cluster"

# The seed's sweep: KL policy x latent size on Fashion-MNIST (about 10 minutes on 2 cores).
sweep: setup data
	$(VENV)/bin/latentatlas sweep jobs/configs/sweep_fmnist.yaml $(ARGS)

# The documentation site: the generated references (every verb's options, every config key),
# then `mkdocs build --strict` into site/ (`.venv/bin/mkdocs serve` to browse it).
docs: setup
	$(PY) -m jobs.reference docs/reference
	$(VENV)/bin/mkdocs build --strict

lint: setup
	$(VENV)/bin/ruff check .

bench: setup data
	$(PY) bench/train_throughput.py --limit 30000
	$(PY) bench/encode_throughput.py
	$(PY) bench/linear_map.py
	$(PY) bench/tracking_load.py
	$(PY) bench/pipeline.py

clean:
	rm -rf $(VENV) mlflow.db mlartifacts ray_results encodings logs site
