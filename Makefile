# The two set-up commands are `make demo` and `make test`; each installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# make demo BACKEND=web (or chatgpt): a browser backend against its stand-in
BACKEND ?= openai
STAMP := $(VENV)/.installed
# The diffusers backend's extra, for its tests; torch pinned first, so that pip never takes a
# newer build. Where a CPU wheel of that version is on disk (the CI machines' pip config), that
# is what gets installed; elsewhere (a laptop) torch==2.13.0 is PyPI's own build, CUDA
# included on Linux (multi-GB). The demo and `make unit` do without it (the diffusers tests
# then skip, saying so).
LOCAL_STAMP := $(VENV)/.installed-local

.PHONY: install local browser demo test lint unit run login bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

local: $(LOCAL_STAMP)

$(LOCAL_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,local]'
	touch $@

browser: install
	bash scripts/ensure-browser.sh $(PY)

# The default demo needs no browser; the browser backends get one first.
demo: install
	$(if $(filter web chatgpt,$(BACKEND)),bash scripts/ensure-browser.sh $(PY))
	$(PY) scripts/demo.py $(BACKEND)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: browser local lint
	$(PY) -m pytest -q --durations=25

unit: install
	$(PY) -m pytest -q -m "not e2e"

run: browser
	$(PY) watcher.py run

# Every benchmark at full size (about half an hour); rewrites BENCHMARKS.md. Not part of `make test`.
bench: browser local
	$(PY) -m bench

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
