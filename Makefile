# mirsearch: `make index` installs everything and indexes the default catalog; `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SHARED ?= ../shared
DEMO := var/demo
CATALOG ?= $(if $(wildcard $(SHARED)/audio/manifest.tsv),$(SHARED)/audio,$(DEMO))
MIRSEARCH_HOME ?= var
export MIRSEARCH_HOME

.PHONY: install index test lint mutants teacher model eval eval-dupes calibrate-dupes bench olaf serve clean

install: $(INSTALLED)

# The stamp file: a second run installs nothing until pyproject.toml changes.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

$(DEMO): | $(INSTALLED)
	$(BIN)/mirsearch demo $@

index: $(INSTALLED) $(if $(filter $(DEMO),$(CATALOG)),$(DEMO))
	$(BIN)/mirsearch index $(CATALOG)

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

lint: $(INSTALLED)
	$(BIN)/ruff check mirsearch web tests bench migrations scripts
	$(BIN)/ruff format --check mirsearch web tests bench migrations scripts
	$(BIN)/lint-imports

# Tests that can fail: each mutant of scripts/mutants.py changes a line, its tests must fail (~3 min).
mutants: $(INSTALLED)
	$(BIN)/python scripts/mutants.py

# The musicnn teachers' weights, converted from the musicnn 0.1.0 wheel (pip download, no TensorFlow).
teacher: $(INSTALLED)
	$(BIN)/python scripts/convert_musicnn.py --out mirsearch/assets/teachers

# The shipped model end to end: fetch the training music (Debian packages), train the matching
# branch, distil the tagging branch from the teachers (their outputs cached in var/teacher_cache).
MODEL_OPTIONS ?=
model: $(INSTALLED)
	$(BIN)/python scripts/fetch_training_music.py --out var/training_music
	$(BIN)/mirsearch train-default $(SHARED) --music var/training_music $(MODEL_OPTIONS)

# Genre evaluation on ../shared/genres: a head on the shipped network's frozen embedding and the
# MFCC baseline, grouped CV (EVAL_FOLDS) and the held-out soundfont, in minutes. Add `cnn` to
# EVAL_METHODS to also train a network per fold (~35 min each on 2 cores, EVAL_EPOCHS epochs).
EVAL_FOLDS ?= 5
EVAL_EPOCHS ?= 6
EVAL_METHODS ?= head,baseline
GENRE_EVAL := $(BIN)/mirsearch evaluate $(SHARED)/genres/manifest.tsv --epochs $(EVAL_EPOCHS) \
	--methods $(EVAL_METHODS) --unlabelled $(SHARED)/audio
eval: $(INSTALLED)
	$(BIN)/python bench/eval_tags.py $(SHARED)/audio
	$(BIN)/python scripts/fetch_training_music.py --likeness
	$(BIN)/python bench/eval_retrieval.py $(SHARED)/audio --likeness var/likeness_music
	$(GENRE_EVAL) --folds 0 --heldout soundfont=TimGM6mb.sf2 --out-dir bench/heldout
	$(GENRE_EVAL) --folds $(EVAL_FOLDS) --out-dir bench

eval-dupes: $(INSTALLED)
	$(BIN)/python bench/eval_dupes.py $(SHARED)/audio

calibrate-dupes: $(INSTALLED)
	$(BIN)/python bench/eval_dupes.py $(SHARED)/audio --calibrate

bench: $(INSTALLED)
	$(BIN)/python bench/run.py --shared $(SHARED) $(BENCH_ARGS)

# Olaf (JorenSix/Olaf), the landmark fingerprinter `make bench` runs beside mirsearch when it is
# built: compiled from a checkout in OLAF_SRC with Zig from PyPI (the `olaf` extra, which also
# brings an ffmpeg for Olaf's decoding), installed as var/olaf/bin/olaf.
OLAF_SRC ?= var/olaf/src
OLAF_PREFIX := var/olaf
OLAF := $(OLAF_PREFIX)/bin/olaf
OLAF_INSTALLED := $(VENV)/.installed-olaf

olaf: $(OLAF)

$(OLAF): $(OLAF_SRC)/build.zig $(OLAF_INSTALLED) $(wildcard $(OLAF_SRC)/src/*.[ch] $(OLAF_SRC)/cli/*.zig)
	cd $(OLAF_SRC) && $(abspath $(BIN))/python -m ziglang build -Doptimize=ReleaseFast \
		--prefix $(abspath $(OLAF_PREFIX))
	touch $@

$(OLAF_SRC)/build.zig:
	@echo "No Olaf source in $(OLAF_SRC): check out JorenSix/Olaf there, or name a checkout:" \
		"make olaf OLAF_SRC=path/to/Olaf" >&2
	@exit 1

$(OLAF_INSTALLED): pyproject.toml | $(INSTALLED)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[olaf]'
	touch $@

serve: $(INSTALLED)
	$(BIN)/mirsearch serve

clean:
	rm -rf var runs
