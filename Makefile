# coachbot: two commands on a fresh machine (Python 3.11): `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test install classifier lint lock ingest doctor chat bench bench-report clean help

help:
	@echo "make run    - install (first time), build the knowledge index, start the web app"
	@echo "make chat   - the same coach in the terminal"
	@echo "make test   - install (first time), lint and run the test suite"
	@echo "make bench  - run the benchmarks (about 30 min, idle machine) and write bench/RESULTS.md"
	@echo "make lock   - re-resolve pyproject.toml into requirements.lock, with hashes (needs PyPI)"

$(STAMP): requirements.lock pyproject.toml scripts/install.sh scripts/build-llama.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo ">> Installing from requirements.lock (the first install builds llama-cpp-python: ~7 min on 2 cores)"
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	scripts/install.sh $(BIN)/python
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# The guidance line classifier is trained once per machine and training set (cached by content
# hash in ~/.cache/coachbot), before the app or the tests need it.
classifier: install
	@echo ">> Guidance classifier (trained on first use, about a minute on 2 cores; then cached)"
	@$(BIN)/coachbot check "Thanks for telling me." > /dev/null

PORT ?= 8000
HOST ?= 127.0.0.1

run: install
	$(BIN)/coachbot ingest
	@$(MAKE) --no-print-directory classifier
	@echo ">> coachbot is starting: open http://$(HOST):$(PORT) (Ctrl+C to stop)"
	$(BIN)/chainlit run bot/web/app.py --headless --host $(HOST) --port $(PORT)

test: install
	@scripts/install-browser.sh $(VENV)/.browser-unavailable
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	@$(MAKE) --no-print-directory classifier
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

ingest: install
	$(BIN)/coachbot ingest

doctor: install
	$(BIN)/coachbot doctor

chat: install
	$(BIN)/coachbot chat

# Benchmarks: each writes bench/results/<name>.json; bench/report.py renders bench/RESULTS.md.
BENCHES ?= model_speed coach_speed customer_speed retrieval guidance_latency eval_speed
bench: install
	$(BIN)/coachbot ingest
	@set -e; for b in $(BENCHES); do echo ">> bench/$$b.py"; $(BIN)/python bench/$$b.py; done
	$(BIN)/python bench/load.py --model fake
	$(BIN)/python bench/load.py --model embedded
	$(BIN)/python bench/report.py

bench-report: install
	$(BIN)/python bench/report.py

# The lock: every dependency of pyproject.toml (with the dev extra), pinned, with hashes, for
# Python 3.11 on x86_64 Linux. llama-cpp-python stays out (scripts/build-llama.sh builds it for the
# CPU, and that wheel cannot match a registry hash); its own dependencies stay in. Pins already
# in requirements.lock are kept: `make lock LOCK_ARGS=--upgrade` (or `--upgrade-package NAME`)
# moves them.
LOCK_ARGS ?=
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra dev -p 3.11 --python-platform x86_64-unknown-linux-gnu \
	  --generate-hashes --no-emit-package llama-cpp-python --no-header $(LOCK_ARGS) -o requirements.lock

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache .import_linter_cache
