# The two set-up commands are `make demo` and `make test`; each installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# make demo BACKEND=web: the Sora web backend against its stand-in
BACKEND ?= openai
STAMP := $(VENV)/.installed

.PHONY: install browser demo test lint unit run login bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

browser: install
	bash scripts/ensure-browser.sh $(PY)

# The default demo needs no browser; the web one gets one first.
demo: install
	$(if $(filter web,$(BACKEND)),bash scripts/ensure-browser.sh $(PY))
	$(PY) scripts/demo.py $(BACKEND)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: browser lint
	$(PY) -m pytest -q

unit: install
	$(PY) -m pytest -q -m "not e2e"

run: browser
	$(PY) watcher.py run

# Every benchmark at full size (about half an hour); rewrites BENCHMARKS.md. Not part of `make test`.
bench: browser
	$(PY) -m bench

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
