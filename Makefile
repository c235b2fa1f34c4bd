# `make run`: install what is missing, then serve the app (UI, REST API, OpenAI API).
# `make test`: install what is missing, then run the whole test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install install-test run test lint bench contracts

install:
	@VENV=$(VENV) bash scripts/bootstrap.sh

install-test:
	@VENV=$(VENV) bash scripts/bootstrap.sh --test

run: install
	$(PY) app.py

test: install-test
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install
	$(PY) bench/llm.py

# Recompile chain/contracts into chain/artifacts. The artifacts are committed, so the app and
# the tests need no compiler; run this after changing a contract.
contracts: install
	cd chain && node build/compile.mjs
