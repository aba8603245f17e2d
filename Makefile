# Build, test and execute the adaptive-computation book.
#
#   make book            install, execute the book's notebooks, build the HTML book
#   make test            install, lint, run pytest over tests/ (runs the notebooks in quick mode itself)
#   make lint            ruff check . (style, import order; configured in pyproject.toml)
#   make execute         run every notebooks/*.ipynb through papermill (QUICK=1: quick mode)
#   make html            build the HTML from notebooks already executed (QUICK=1: the quick ones)
#   make html-student    the same book with the exercises' solutions hidden, in $(SITE_DIR)-student
#                        (make book-student: execute, then html-student)
#   make handouts        the notebooks without solutions or outputs, in build/handouts/
#   make benchmark       python -m adaptive.benchmark $(BENCH_ARGS), e.g. BENCH_ARGS=--quick
#   make gpu-check       on a CUDA GPU: quick chapters, full-shape bf16 benchmarks, torchrun -> one JSON
#   make venv            only the environment (also: make install); make clean, make clean-all
#   make help            this text
#
# Variables: QUICK=1 (papermill -p quick True, output under build/quick/), DEVICE=cuda
# (-p device cuda), PARAMS='-p seed 1' (more papermill parameters), NOTEBOOKS='notebooks/a.ipynb ...',
# VENV=path (an existing environment, e.g. VENV=$CONDA_PREFIX), CELL_TIMEOUT=seconds per cell.
#
# Layout of the book build. Notebooks are committed without outputs and the book must show
# papermill's executed copies, while the code page includes adaptive/*.py and Jupyter Book 1
# only reads files inside its source folder. So `make html` stages a source folder that mirrors
# the repository root:
#
#   $(SITE_DIR)/src/book       -> symlink to book/       (intro, code page, references, _static)
#   $(SITE_DIR)/src/adaptive   -> symlink to adaptive/   (reached by literalinclude :pyobject:)
#   $(SITE_DIR)/src/notebooks/ <- copies of $(EXEC_DIR)/notebooks/<name>.ipynb for the toc's notebooks
#
# and builds it with book/_config.yml and book/_toc.yml (only_build_toc_files, execution off).
# Because the staged root mirrors the repository root, a page's path in the book is its path
# in the repository, so the launch buttons (repository.path_to_book: "") open
# notebooks/<name>.ipynb on Colab and Binder, and relative links such as ../adaptive/act.py
# resolve the same way in the repository and in the build. The HTML lands in
# $(SITE_DIR)/_build/html.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON3 ?= python3
VENV ?= .venv
PY ?= $(VENV)/bin/python
BIN = $(dir $(PY))
STAMP := $(VENV)/.installed
# The targets that use the environment depend on $(INSTALL); `INSTALL=` (empty) skips the
# install check, for callers that already run inside a prepared environment (tests/conftest.py).
INSTALL ?= $(STAMP)
export JUPYTER_PREFER_ENV_PATH := 1

# --- which notebooks, and where their executed copies go --------------------------------------
TOC := book/_toc.yml
TOC_NAMES := $(shell sed -n 's|^[ -]*file: *notebooks/\([A-Za-z0-9_.-]*\).*$$|\1|p' $(TOC))
NOTEBOOKS ?= $(wildcard notebooks/*.ipynb)
QUICK ?=
DEVICE ?=
PARAMS ?=
CELL_TIMEOUT ?= 7200
ifeq ($(QUICK),1)
  EXEC_DIR ?= build/quick
  RESULTS_DIR ?= build/quick/results
  SITE_DIR ?= build/quick/book
  PM_PARAMS := -p quick True
else
  EXEC_DIR ?= build/executed
  RESULTS_DIR ?= build/results
  SITE_DIR ?= build/book
  PM_PARAMS :=
endif
ifneq ($(DEVICE),)
  PM_PARAMS += -p device $(DEVICE)
endif
PM_PARAMS += $(PARAMS)
EXECUTED = $(patsubst notebooks/%.ipynb,$(EXEC_DIR)/notebooks/%.ipynb,$(NOTEBOOKS))
ADAPTIVE_SRC := $(shell find adaptive -name '*.py' 2>/dev/null)

# --- MathJax, bundled so that the book renders math with no network ---------------------------
MATHJAX_VERSION := 3.2.2
MATHJAX_DIR := book/_static/mathjax
MATHJAX_STAMP := $(MATHJAX_DIR)/.mathjax-$(MATHJAX_VERSION)
NPM_DIR := build/npm

.PHONY: help venv install execute html book test lint benchmark gpu-check mathjax clean clean-all FORCE

help:
	@sed -n '1,19p' Makefile | sed 's/^# \{0,1\}//'

# --- environment ------------------------------------------------------------------------------
$(VENV)/bin/python:
	$(PYTHON3) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -r requirements.txt
	$(VENV)/bin/python -m pip install -e .
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (adaptive)"
	touch $@

venv install: $(STAMP)

# --- executing notebooks ----------------------------------------------------------------------
# The parameters a run used are part of its inputs: the executed copies are redone when they change.
$(EXEC_DIR)/.params: FORCE
	@mkdir -p $(@D)
	@echo '$(PM_PARAMS)' | cmp -s - $@ || echo '$(PM_PARAMS)' > $@

# papermill writes into running/ first: a notebook that fails stays there, with its traceback,
# for reading, and never passes for an executed copy.
$(EXEC_DIR)/notebooks/%.ipynb: notebooks/%.ipynb $(ADAPTIVE_SRC) $(EXEC_DIR)/.params $(INSTALL)
	@mkdir -p $(@D) $(EXEC_DIR)/running $(RESULTS_DIR)
	@echo "==> papermill $< $@ -p results_path $(RESULTS_DIR)/$*.json $(strip $(PM_PARAMS))"
	@$(PY) -m papermill $< $(EXEC_DIR)/running/$*.ipynb -k python3 --cwd $(CURDIR) --progress-bar \
	    --execution-timeout $(CELL_TIMEOUT) -p results_path $(RESULTS_DIR)/$*.json $(PM_PARAMS) \
	  || { echo "error: $< failed; the partly executed copy is $(EXEC_DIR)/running/$*.ipynb"; exit 1; }
	@mv $(EXEC_DIR)/running/$*.ipynb $@

execute: $(EXECUTED)
	@echo "$(words $(EXECUTED)) executed notebook(s) up to date in $(EXEC_DIR)/notebooks, results in $(RESULTS_DIR)"

# --- the book ---------------------------------------------------------------------------------
$(MATHJAX_STAMP):
	@command -v npm >/dev/null || { echo "npm is needed once to bundle MathJax (apt-get install npm)"; exit 1; }
	mkdir -p $(NPM_DIR)
	npm install --prefix $(NPM_DIR) --no-save --no-package-lock --no-audit --no-fund mathjax@$(MATHJAX_VERSION)
	rm -rf $(MATHJAX_DIR)
	mkdir -p $(dir $(MATHJAX_DIR))
	cp -r $(NPM_DIR)/node_modules/mathjax/es5 $(MATHJAX_DIR)
	test -f $(MATHJAX_DIR)/tex-chtml.js
	touch $@

mathjax: $(MATHJAX_STAMP)

# Builds from whatever executed copies $(EXEC_DIR)/notebooks holds; it executes nothing.
BOOK_CONFIG ?= book/_config.yml
html: $(MATHJAX_STAMP) $(INSTALL)
	@missing=""; for n in $(TOC_NAMES); do \
	    [ -f $(EXEC_DIR)/notebooks/$$n.ipynb ] || missing="$$missing $$n"; done; \
	if [ -n "$$missing" ]; then \
	    echo "error: no executed copy in $(EXEC_DIR)/notebooks of:$$missing (run make execute$(if $(QUICK), QUICK=1))"; \
	    exit 1; fi
	rm -rf $(SITE_DIR)/src $(SITE_DIR)/_build
	mkdir -p $(SITE_DIR)/src/notebooks
	ln -s $(CURDIR)/book $(SITE_DIR)/src/book
	ln -s $(CURDIR)/adaptive $(SITE_DIR)/src/adaptive
	for n in $(TOC_NAMES); do cp $(EXEC_DIR)/notebooks/$$n.ipynb $(SITE_DIR)/src/notebooks/; done
	$(PY) book/hide_cells.py $(SITE_DIR)/src/notebooks/*.ipynb
	$(PY) book/run_times.py $(SITE_DIR)/src/run_times.md --build build
	$(BIN)jupyter-book build $(SITE_DIR)/src --path-output $(SITE_DIR) \
	    --config $(BOOK_CONFIG) --toc $(TOC) --all -W --keep-going
	@echo "The book: $(CURDIR)/$(SITE_DIR)/_build/html/index.html"

book: $(INSTALL)
	$(MAKE) --no-print-directory execute NOTEBOOKS="$(TOC_NAMES:%=notebooks/%.ipynb)"
	$(MAKE) --no-print-directory html

# --- for students: the exercises without their solutions (book/handouts.py) -------------------
.PHONY: html-student book-student handouts
# The same book with every {solution} hidden (sphinx-exercise's hide_solutions, set in a copy of
# book/_config.yml), built like `make html` into its own folder, so the full book stays.
STUDENT_SITE_DIR ?= $(SITE_DIR)-student
html-student: $(INSTALL)
	$(PY) book/handouts.py config book/_config.yml $(STUDENT_SITE_DIR)/_config.yml
	$(MAKE) --no-print-directory html SITE_DIR=$(STUDENT_SITE_DIR) BOOK_CONFIG=$(STUDENT_SITE_DIR)/_config.yml

book-student: $(INSTALL)
	$(MAKE) --no-print-directory execute NOTEBOOKS="$(TOC_NAMES:%=notebooks/%.ipynb)"
	$(MAKE) --no-print-directory html-student

# The notebooks of $(NOTEBOOKS) with every {solution} block removed and no outputs, for Jupyter,
# Colab or Binder.
handouts: $(INSTALL)
	$(PY) book/handouts.py notebooks build/handouts $(NOTEBOOKS)

# --- tests and benchmark ----------------------------------------------------------------------
test: lint $(INSTALL) $(MATHJAX_STAMP)
	$(PY) -m pytest tests

lint: $(INSTALL)
	$(BIN)ruff check .

benchmark: $(INSTALL)
	$(PY) -m adaptive.benchmark $(BENCH_ARGS)

# Every GPU measurement in one command (adaptive/infra/gpu_check.py): stops at once without a GPU.
gpu-check: $(INSTALL)
	$(PY) -m adaptive.infra.gpu_check --out build/gpu-check

clean:
	rm -rf build $(MATHJAX_DIR)

clean-all: clean
	rm -rf $(VENV) *.egg-info
