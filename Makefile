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

.PHONY: install index test lint model eval eval-dupes calibrate-dupes bench serve clean

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
	$(BIN)/ruff check mirsearch web tests bench migrations
	$(BIN)/lint-imports

model: $(INSTALLED)
	$(BIN)/mirsearch train-default $(SHARED)

# Genre evaluation trains one network for the held-out soundfont (~35 min on 2 cores) and one per
# CV fold, EVAL_EPOCHS each: well over two hours here with the phase-vocoder training views
# (`make eval EVAL_FOLDS=5 EVAL_EPOCHS=24` for the full figures, on a bigger machine).
EVAL_FOLDS ?= 3
EVAL_EPOCHS ?= 6
GENRE_EVAL := $(BIN)/mirsearch evaluate $(SHARED)/genres/manifest.tsv --epochs $(EVAL_EPOCHS) \
	--unlabelled $(SHARED)/audio
eval: $(INSTALLED)
	$(BIN)/python bench/eval_retrieval.py $(SHARED)/audio
	$(GENRE_EVAL) --folds 0 --heldout soundfont=TimGM6mb.sf2 --out-dir bench/heldout
	$(GENRE_EVAL) --folds $(EVAL_FOLDS) --out-dir bench

eval-dupes: $(INSTALLED)
	$(BIN)/python bench/eval_dupes.py $(SHARED)/audio

calibrate-dupes: $(INSTALLED)
	$(BIN)/python bench/eval_dupes.py $(SHARED)/audio --calibrate

bench: $(INSTALLED)
	$(BIN)/python bench/run.py --shared $(SHARED)

serve: $(INSTALLED)
	$(BIN)/mirsearch serve

clean:
	rm -rf var runs
