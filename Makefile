# The two commands a newcomer runs: `make serve` and `make test`. Each creates .venv
# and installs what it needs on first use. `make test-browser` runs the dashboard's tests in
# a real browser (Debian's chromium, driven by Selenium), which `make test` does not collect.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# The browser the dashboard's tests drive: Debian's packages, never a download.
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver

.PHONY: serve test test-browser browser bench clean

$(BIN)/qwen-image-mock: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

serve: $(BIN)/qwen-image-mock
	$(BIN)/qwen-image-mock serve --host $(HOST) --port $(PORT)

test: $(BIN)/qwen-image-mock
	$(BIN)/python -m pytest tests contract_tests

# Chromium and its driver: installed from Debian's packages when run as root (as in CI),
# otherwise named, with the command that installs them.
browser:
	@if [ -x "$(CHROMIUM)" ] && [ -x "$(CHROMEDRIVER)" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium and chromium-driver from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else \
		echo "make test-browser needs Chromium and its driver at $(CHROMIUM) and $(CHROMEDRIVER)."; \
		echo "Install them with:  sudo apt-get install chromium chromium-driver"; \
		echo "(or set CHROMIUM=... CHROMEDRIVER=... to yours)"; \
		exit 1; \
	fi

test-browser: $(BIN)/qwen-image-mock browser
	QWEN_MOCK_CHROMIUM=$(CHROMIUM) QWEN_MOCK_CHROMEDRIVER=$(CHROMEDRIVER) \
		$(BIN)/python -m pytest -p no:cacheprovider --browser tests/browser

bench: $(BIN)/qwen-image-mock
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
