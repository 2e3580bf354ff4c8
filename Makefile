# Two commands do all set-up on a fresh machine (see README.md):
#   make run   - create/reuse .venv, install, run the default sweep, then write its HTML report
#   make test  - create/reuse .venv, install with test extras (and chromium for the report test), run the tests
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1

.PHONY: run test test-fast lint bench browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

run: $(STAMP)
	$(BIN)/tune-schane sweep
	$(BIN)/tune-schane analyze

# Debian's chromium renders the HTML report in tests/test_report_browser.py.
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

test: $(STAMP) browser
	$(BIN)/ruff check .
	TUNE_SCHANE_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV)
