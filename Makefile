# Two commands matter: `make study` and `make test`. Both install on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?=
# pip prints one warning per missing local index folder; they are noise here.
PIP_QUIET := 2>&1 | { grep -v -E "^WARNING: Location .* is ignored" || true; }

export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install study test ui clean help

help:
	@echo "make study [PROFILE=name]  run the study (dvc repro) on the offline default dataset"
	@echo "make test                   run the whole test suite"
	@echo "make ui                     browse runs in the MLflow UI (http://127.0.0.1:5000)"

install: $(STAMP)

# Torch first: timm depends on torch, and the pinned build must win.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first time takes a few minutes)"
	@set -o pipefail; $(BIN)/pip install -q --disable-pip-version-check \
		$$(grep -E '^(torch|torchvision)==' requirements.lock) $(PIP_QUIET)
	@set -o pipefail; $(BIN)/pip install -q --disable-pip-version-check -r requirements.lock $(PIP_QUIET)
	@set -o pipefail; $(BIN)/pip install -q --disable-pip-version-check --no-deps -e . $(PIP_QUIET)
	@touch $(STAMP)

study: install
	@if [ -n "$(PROFILE)" ]; then \
		$(BIN)/python -m pipelines.profile "$(PROFILE)"; \
	fi
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest -q

ui: install
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db

clean:
	rm -rf results data/prepared reports/results.md .pytest_cache
