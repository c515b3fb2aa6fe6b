# The two commands a newcomer runs: `make serve` and `make test`. Each creates .venv
# and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test bench clean

$(BIN)/qwen-image-mock: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

serve: $(BIN)/qwen-image-mock
	$(BIN)/qwen-image-mock serve --host $(HOST) --port $(PORT)

test: $(BIN)/qwen-image-mock
	$(BIN)/python -m pytest tests contract_tests

bench: $(BIN)/qwen-image-mock
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
