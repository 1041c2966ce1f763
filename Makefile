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

.PHONY: install browser study test bench lint format ui clean help

help:
	@echo "make study [PROFILE=name]  run the study (dvc repro) on the offline default dataset"
	@echo "make test                   lint, then run the whole test suite"
	@echo "make bench                  the timed speed suite (tests/benchmarks), saved in .benchmarks/"
	@echo "make lint                   ruff check + ruff format --check (make format fixes)"
	@echo "make browser                install Chromium for the report's browser test (apt-get)"
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

# params.yaml is read by our bounded loader first: DVC hangs, silently, on a YAML alias bomb.
study: install
	@$(BIN)/python -m pipelines.params
	@if [ -n "$(PROFILE)" ]; then \
		$(BIN)/python -m pipelines.profile "$(PROFILE)"; \
	fi
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# Headless Chromium + its driver for tests/test_report_browser.py (skipped while /usr/bin/chromium is absent).
# Without apt-get, or when it fails, this says so and `make test` goes on.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "make browser: apt-get is not available; install Chromium and chromedriver (/usr/bin/chromium," \
		     "/usr/bin/chromedriver) yourself, or tests/test_report_browser.py is skipped"; \
	else \
		echo "installing chromium + chromium-driver with apt-get (for the report's browser test)"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
		|| { $(SUDO) apt-get update -q >/dev/null && \
		     $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; } \
		|| echo "make browser: apt-get could not install chromium chromium-driver; tests/test_report_browser.py" \
		        "is skipped"; \
	fi

# Two pytest workers (each with its share of the cores, see tests/conftest.py), then the tests that
# assert wall-time targets, alone on the machine.
TEST_WORKERS ?= 2
test: install browser lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not alone" --durations=15
	$(BIN)/python -m pytest -q -m alone

# The speed suite alone, timed, one process (no xdist), saved as JSON in .benchmarks/ (git-ignored) and
# compared with the last saved run of this machine when there is one; then the README's table from it.
bench: install
	@compare=$$(ls .benchmarks/*/*.json 2>/dev/null | tail -n 1); \
	$(BIN)/python -m pytest -q -p no:xdist tests/benchmarks --benchmark-enable --benchmark-autosave \
		--benchmark-columns=min,median,rounds $${compare:+--benchmark-compare}
	$(BIN)/python -m benchmark.tools.bench_table

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: install
	@# one web worker and no background job runner (GenAI jobs, unused here): 2 processes, about 0.4 GiB
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --host 127.0.0.1 --port 5000 --workers 1 \
		--backend-store-uri sqlite:///mlflow.db

clean:
	rm -rf results data/prepared reports/results.csv reports/report.md reports/report.html reports/figures reports/plots reports/metrics.json reports/metrics .pytest_cache
