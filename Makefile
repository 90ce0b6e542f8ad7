# The two commands of the README: `make demo` and `make test`. Each builds what it needs
# from scratch on a fresh machine (a virtualenv from the pinned requirements, newman from npm).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit bench setup clean rules-doc browser screenshots
.PHONY: integration notebook-tests clients browser-tests
.PHONY: help lint clean-models
# `make` alone lists the targets (the `## ` text on each target's line).
.DEFAULT_GOAL := help

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium and its driver, for the browser tests (tests/browser): installed once, as
# root (through sudo otherwise), when either is missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser: ## install Debian's chromium and chromedriver (once, for tests/browser)
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

setup: $(STAMP) node_modules/.installed browser ## the venv, newman and chromium, each when missing

demo: $(STAMP) ## train both models and run the tutorial end to end on the local cloud
	$(BIN)/l2c demo

# Every layer, quickest first (pyproject's testpaths); each layer also runs on its own.
test: setup ## every test layer: unit, integration, notebooks, clients, browser
	$(BIN)/python -m pytest

unit: $(STAMP) ## the unit tests (tests/unit): no cloud, a minute or two
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP) ## the integration tests (tests/integration), on the session's local cloud
	$(BIN)/python -m pytest tests/integration

notebook-tests: $(STAMP) ## notebooks/ (nbval) and tests/notebooks, on the session's local cloud
	$(BIN)/python -m pytest notebooks tests/notebooks

# The notebooks' committed outputs: each notebook run in a fresh kernel (the deployment one on
# a fresh local cloud), its outputs made the same on every run (tests/notebooks/render.py).
.PHONY: notebooks
notebooks: $(STAMP) ## run the notebooks and keep their outputs, sanitised, for committing
	$(BIN)/python tests/notebooks/render.py

clients: $(STAMP) node_modules/.installed ## the AWS CLI, newman, sagemaker-core and boto3 from outside (tests/clients)
	$(BIN)/python -m pytest tests/clients

browser-tests: $(STAMP) browser ## the prediction pages in headless chromium (tests/browser)
	$(BIN)/python -m pytest tests/browser

bench: setup ## run the benchmarks (bench/README.md)
	$(BIN)/python -m bench

# docs/images/page-*.png: the prediction pages with their answers, in headless Chromium.
screenshots: $(STAMP) browser ## docs/images/page-*.png, in headless chromium
	$(BIN)/python tests/browser/screenshots.py docs/images

# The rule table of docs/aws-rules.md, from the rules the local cloud runs.
rules-doc: $(STAMP) ## write docs/aws-rules.md from the local cloud's rules
	$(BIN)/python -m l2c.local.rules --write docs/aws-rules.md

help: ## list the targets
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The settings are pyproject.toml's [tool.ruff]; read-only here (`ruff check --fix .` and
# `ruff format .` apply them; so does the pre-commit hook).
lint: $(STAMP) ## ruff: lint and format check, read-only
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint

# Trained models are kept: they take minutes to make again, and `clean-models` asks first.
clean: ## remove the venv, node_modules and caches (not models/)
	rm -rf $(VENV) node_modules .pytest_cache .hypothesis .ruff_cache build dist
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' -o -name .ipynb_checkpoints \) -prune -exec rm -rf {} +

# Only at a terminal and only on a typed y: never from a script, CI or a piped `yes`.
clean-models: ## delete the trained models in models/, after asking
	@if [ ! -t 0 ]; then echo "clean-models: not deleting models/ without a terminal to ask at" >&2; exit 1; fi
	@read -r -p "Delete the trained models in models/? [y/N] " answer; \
	if [ "$$answer" = y ] || [ "$$answer" = Y ]; then rm -rf models && echo "models/ deleted"; else echo "models/ kept"; fi
