# kato-sessions: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-scale images clean

# Create .venv and install the project with every extra (and build the engine's compiled core,
# optional: without a C compiler the pure-Python path runs); redone when the build inputs change.
# It says what it does: the first install takes about a minute.
$(STAMP): pyproject.toml setup.py processor_image/engine/_core.c session_manager/proxy/_wire.c \
		client/pyproject.toml
	@test -x $(BIN)/python || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> upgrading pip"
	@$(BIN)/python -m pip install -q --upgrade pip
	@echo "==> installing kato-sessions and its dependencies (about a minute the first time)"
	@{ $(BIN)/python -m pip install -e ./client -e '.[dev]' 2>&1; echo $$? > $(VENV)/.pip-status; } \
		| tee $(VENV)/install.log \
		| grep --line-buffered -E '^(Collecting|Building|Successfully|Installing|ERROR)' || true
	@test "$$(cat $(VENV)/.pip-status)" = 0 || { echo "install failed: see $(VENV)/install.log"; exit 1; }
	@echo "==> installed"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/kato-sessions serve

lint: $(STAMP)
	$(BIN)/ruff check processor_image session_manager client tests bench
	$(BIN)/ruff format --check processor_image session_manager client tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# Each benchmark prints a table and writes bench/results/<name>.json.
bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/processor.py
	$(BIN)/python bench/proxy.py
	$(BIN)/python bench/reaper.py
	$(BIN)/python bench/durability.py
	$(BIN)/python bench/snapshots.py
	$(BIN)/python bench/create.py
	$(BIN)/python bench/v3_create.py
	$(BIN)/python bench/claim_load.py
	$(BIN)/python bench/client.py

# Needs a Docker engine and the images (scripts/build-images).
bench-scale: $(STAMP)
	$(BIN)/python bench/container_start.py
	$(BIN)/python bench/scale.py --backend docker --sessions 120
	$(BIN)/python bench/create.py --modes docker-warm,docker-empty

images:
	scripts/build-images

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
