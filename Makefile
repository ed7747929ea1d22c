# coinmatch: `make demo` and `make test` work on a fresh machine (they create .venv and install).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install system benchmarks default-model clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: a CUDA build that also runs on the CPU
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) demo/run_demo.py out/demo

# Debian's Chromium for the browser tests (never a downloaded browser) and Tesseract for printed captions; as root,
# installed when missing. Without them the browser tests are skipped and captions left empty, the reason printed.
system:
	@{ command -v chromium && command -v tesseract; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium tesseract-ocr >/dev/null 2>&1) ; } || \
		echo "chromium or tesseract-ocr is not installed (apt-get install chromium tesseract-ocr): browser tests skip"

test: $(STAMP) system
	$(PY) -m pytest -q -n 2 --dist loadfile

# the benchmarks a maintainer reruns (about 30 minutes on 2 cores); each prints its figures and writes them to
# benchmarks/results/. The recipe's row: train it (README), then benchmarks/retrieval.py --models recipe.cm
benchmarks: $(STAMP)
	$(PY) benchmarks/retrieval.py
	$(PY) benchmarks/embedding_speed.py
	$(PY) benchmarks/build_profile.py
	$(PY) benchmarks/finder_speed.py
	$(PY) benchmarks/local_features.py
	$(PY) benchmarks/training_cache.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/index.py
	$(PY) benchmarks/build_speed.py --memory-entries 10000
	$(PY) benchmarks/angles.py
	$(PY) benchmarks/web.py
	$(PY) benchmarks/link.py
	$(PY) benchmarks/dedup.py
	$(PY) benchmarks/split.py

# the bundled default model (src/coinmatch/models/default.cm), made again from photos the project may redistribute
# (the euro singles, MIT; the Wikimedia photos, CC): about 9 minutes on 2 cores. DATA: the shared data folder;
# DEFAULT_OUT: where to write it. After replacing the bundled one, rerun tests/data/make_default_reference.py.
DATA ?= ../shared/data
DEFAULT_OUT ?= src/coinmatch/models/default.cm
default-model: $(STAMP)
	$(VENV)/bin/coinmatch train $(DATA)/euro-coins/singles.csv $(DATA)/ancient-coins/wikimedia.csv \
		--out $(DEFAULT_OUT)

clean:
	rm -rf out .pytest_cache
