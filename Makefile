# `make run`: install what is missing, then serve the app (UI, REST API, OpenAI API).
# `make test`: install what is missing, then run the whole test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test lint bench clean-data

install:
	@VENV=$(VENV) bash scripts/bootstrap.sh

run: install
	$(PY) app.py

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install
	$(PY) bench/llm.py
