# The two commands of the README: `make demo` and `make test`. Each builds what it needs
# from scratch on a fresh machine (a virtualenv from the pinned requirements, newman from npm).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit bench setup clean rules-doc browser screenshots

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
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

setup: $(STAMP) node_modules/.installed browser

demo: $(STAMP)
	$(BIN)/l2c demo

test: setup
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

bench: setup
	$(BIN)/python -m bench

# docs/images/page-*.png: the prediction pages with their answers, in headless Chromium.
screenshots: $(STAMP) browser
	$(BIN)/python tests/browser/screenshots.py docs/images

# The rule table of docs/aws-rules.md, from the rules the local cloud runs.
rules-doc: $(STAMP)
	$(BIN)/python -m l2c.local.rules --write docs/aws-rules.md

clean:
	rm -rf $(VENV) node_modules models .pytest_cache .hypothesis
