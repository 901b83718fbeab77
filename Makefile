# Two commands on a fresh machine:  make lab   and   make test
# Both create or refresh .venv/ first: make lab with the learner's packages (requirements.txt),
# make test and every other contributor target with the contributors' tools on top
# (requirements-dev.txt). DATABASE_URL, if set, always wins.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per list, so neither undoes the other: make lab after make test finds its stamp
# fresh and installs nothing; make test after make lab adds requirements-dev.txt only.
LAB_STAMP := $(VENV)/.installed-lab
DEV_STAMP := $(VENV)/.installed-dev
# uv installs the pinned lists: a learner's first make lab downloads ~200 MB of wheels, which
# took pip 46 s on a 2-core machine and uv 4-14 s (docs/benchmark.md, "make lab on a fresh
# clone"). uv comes from PyPI into the venv with pip, so Python 3.11+ stays all you need.
# uv reads UV_* settings, not pip.conf: behind a private index set UV_DEFAULT_INDEX, or run
# make lab INSTALL='.venv/bin/python -m pip install'.
UV_VERSION := 0.13.8
INSTALL ?= $(BIN)/uv pip install --quiet --python $(BIN)/python
NOTEBOOK ?= notebooks/00_start_here.ipynb
PORT ?= 8888
# Jupyter refuses to run as root (containers, CI) unless told it is deliberate.
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.DEFAULT_GOAL := help
.PHONY: help venv dev lab lab-settings check test test-matrix binder-like lint strip db stop db-stop reset-db benchmark student instructor book html clean classroom-load class-list class-budget hub

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(LAB_STAMP): requirements.txt pyproject.toml lab-settings/*.json
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; run: make PYTHON=python3.12 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(INSTALL) -r requirements.txt -e .
	@$(MAKE) --no-print-directory lab-settings
	@touch $@

# requirements-dev.txt includes requirements.txt: the installer keeps what already fits.
$(DEV_STAMP): requirements-dev.txt $(LAB_STAMP)
	$(INSTALL) -r requirements-dev.txt
	@touch $@

venv: $(LAB_STAMP) ## create or refresh .venv/ with the learner's packages (requirements.txt)

dev: $(DEV_STAMP) ## venv plus the contributors' tools (requirements-dev.txt)

# PostgreSQL starts while JupyterLab does (a first embedded start is an initdb: seconds), so
# its "Database: ..." line and where it runs, or a setup problem's message, show among
# JupyterLab's log lines; a notebook's first connecting cell says the same again. When
# JupyterLab exits (Ctrl-C, File > Shut Down), the embedded server stops too if make lab
# started it (python -m tutorial_kit lab, in tutorial_kit/__main__.py).
lab: venv lab-settings ## start PostgreSQL (compose or embedded) and open JupyterLab on notebook 00
	$(BIN)/python -m tutorial_kit lab -- \
	  $(BIN)/jupyter lab --port=$(PORT) $(LAB_FLAGS) --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/$(NOTEBOOK)

# JupyterLab reads every file in <sys.prefix>/share/jupyter/lab/settings/overrides.d/ as
# default settings: lab-settings/overrides.json turns off the "Jupyter news?" popup.
# Jupyter Server reads <sys.prefix>/etc/jupyter/jupyter_server_config.json (its .d/ folder
# holds extension switches only): the lessons' contents manager (tutorial_kit/lab_contents.py)
# opens a notebook with nothing to save. Every venv gets both files (the stamp above), so
# make lab, the classroom hub and the browser test use them; postBuild does it for Binder.
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.d/async-orm-tutorial.json
LAB_SERVER_CONFIG := $(VENV)/etc/jupyter/jupyter_server_config.json
lab-settings: ## install lab-settings/ in .venv: JupyterLab defaults, notebooks that open clean
	@mkdir -p $(dir $(LAB_OVERRIDES)) $(dir $(LAB_SERVER_CONFIG))
	cp lab-settings/overrides.json $(LAB_OVERRIDES)
	cp lab-settings/jupyter_server_config.json $(LAB_SERVER_CONFIG)

# The fast inner loop for contributors (CONTRIBUTING.md): lint, the unit tests, and
# notebooks 00-02 on the embedded server. make test stays the full suite CI runs.
CHECK_TESTS ?= tests/test_database.py tests/test_errors.py tests/test_strip.py \
	tests/test_troubleshooting.py tests/test_devtools.py tests/test_helpers.py \
	tests/test_repo_files.py tests/test_notebook_structure.py tests/test_claims_files.py \
	tests/test_architecture.py
CHECK_NOTEBOOKS ?= 00_ or 01_ or 02_
check: dev ## the fast loop (<= 60 s): ruff, unit tests, notebooks 00-02 on the embedded server
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow" $(CHECK_TESTS) tests/test_notebooks.py \
	  -k "not test_notebook_database_url and not (test_notebook_embedded and not ($(CHECK_NOTEBOOKS)))"

test: dev ## run every check: notebooks on two servers, helper unit tests, lint, config files
	$(BIN)/python -m pytest

# nox finds python3.11/3.12/3.13 on PATH. pyenv's shims resolve pythonX.Y only for the
# versions PYENV_VERSION names, so when pyenv is installed, name every version it has.
# NOX_ARGS picks sessions: make test-matrix NOX_ARGS='-s "notebooks(3.12, sa21, pg18)"'
PYENV_PYTHONS = $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare --skip-aliases --skip-envs | sort -rV | paste -sd: -)
NOX_ARGS ?=
test-matrix: dev ## nox: the series on Python 3.11-3.13 x SQLAlchemy 2.0/2.1 x PostgreSQL 15/18
	$(if $(PYENV_PYTHONS),PYENV_VERSION=$(PYENV_PYTHONS) PATH="$$(pyenv root)/shims:$$PATH") \
	  $(BIN)/nox --reuse-venv=yes $(NOX_ARGS)

binder-like: dev ## the series as Binder runs it: unprivileged user, environment.yml, embedded PostgreSQL
	$(BIN)/python -m tutorial_harness.binder_like

lint: dev ## ruff on the code and the notebooks
	$(BIN)/ruff check .

# nbstripout's own command, configured here and nowhere else (nbstripout 0.9 reads its
# options from the command line and git config, not from pyproject.toml): the pre-commit
# hook runs make strip NOTEBOOKS=<the staged notebooks>. On top of nbstripout's defaults (outputs,
# execution counts, metadata.widgets, cell.metadata.execution, collapsed, scrolled, ...):
# jupytext's leftovers; cell.metadata.jupyter (a hidden source would also hide a solution's
# own <details> block); language_info and vscode (they name the editor's Python).
# metadata.kernelspec and the cell ids stay. The dev stamp is order-only so that a commit
# hook never reinstalls packages: it needs nbstripout present, not the newest pins.
NBSTRIPOUT_FLAGS := --keep-id --extra-keys "metadata.jupytext metadata.language_info \
	metadata.vscode cell.metadata.lines_to_next_cell cell.metadata.jupyter"
NOTEBOOKS ?= notebooks/*.ipynb
strip: | $(DEV_STAMP) ## nbstripout over notebooks/ (or NOTEBOOKS=...): outputs, counts, editor metadata
	$(BIN)/nbstripout $(NBSTRIPOUT_FLAGS) $(NOTEBOOKS)

db: venv ## make sure a PostgreSQL is running and say which one
	$(BIN)/python -m tutorial_kit up

stop: venv ## stop the embedded PostgreSQL (data stays in .pgdata/) and compose's if it is up; says what it stopped
	$(BIN)/python -m tutorial_kit stop

db-stop: stop ## the same as make stop

reset-db: venv ## drop your own tutorial schemas (nothing else; other learners' stay); a server it starts, it stops
	$(BIN)/python -m tutorial_kit reset

benchmark: dev ## per notebook: wall time, slowest cell, peak kernel RSS
	$(BIN)/python -m tutorial_harness.benchmark

# A class on one server (docs/instructor-guide.md, "Running a class on one server").
LEARNERS ?= 6
HUB_DIR := classroom/jupyterhub
# MODE=series: each learner runs the whole series at their own pace; MODE=lockstep: every
# lesson in all LEARNERS kernels at the same moment, as a class following the instructor.
MODE ?= series
classroom-load: dev ## LEARNERS=N [MODE=lockstep] N learners at once on one server (docs/benchmark.md)
	$(BIN)/python -m tutorial_harness.classroom_load --mode $(MODE) --learners $(LEARNERS)

class-list: venv ## every learner's tutorial schemas with sizes (drop: python -m tutorial_kit class drop)
	$(BIN)/python -m tutorial_kit class list

class-budget: venv ## LEARNERS=N connections the class needs vs the server's max_connections
	$(BIN)/python -m tutorial_kit class budget --learners $(LEARNERS)

$(HUB_DIR)/node_modules/.bin/configurable-http-proxy: $(HUB_DIR)/package-lock.json
	npm ci --no-audit --no-fund --prefix $(HUB_DIR)
	@touch $@

hub: dev $(HUB_DIR)/node_modules/.bin/configurable-http-proxy ## JupyterHub for a class on this machine (set TUTORIAL_CLASS_PASSWORD)
	$(BIN)/jupyterhub -f $(HUB_DIR)/jupyterhub_config.py

student: dev ## learner copies with no solution text at all, in build/student/
	$(BIN)/python -m tutorial_harness.builds student

instructor: dev ## copies with every scaffold filled by its solution, in build/instructor/
	$(BIN)/python -m tutorial_harness.builds instructor

book: dev ## execute every notebook and build the static site (Jupyter Book) in build/book/
	$(BIN)/python -m tutorial_harness.book

html: book ## the same as make book: one way to produce readable pages

clean: ## remove build output (not .venv/ or .pgdata/)
	rm -rf build .pytest_cache .ruff_cache
