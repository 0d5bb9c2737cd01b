# Two entry points for a fresh machine: `make run` and `make test`.
# Both create the virtual environment on first use, with the exact versions of constraints.txt,
# and install sipp_core into it (editable), which also gives the `sipp` command. `make run` installs the
# library and the app only; `make test` adds what the tests need (pytest, the browser, JupyterLab, Ray).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bytecode templates browser-deps bench constraints clean-venv

# The app's own modules are compiled to bytecode before a server starts, as pip does for every package it
# installs: where PYTHONDONTWRITEBYTECODE is set (containers often set it), Python would otherwise compile
# them again at every start (importing them took 0.21-0.25 s instead of 0.07 s on 2 cores). Only files changed
# since are compiled; a read-only checkout only goes without (-qq: no message, and the app starts all the same).
APP_SOURCES := app.py studio.py ui pages sipp_core

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c constraints.txt -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	touch $@ $(VENV)/.installed-app

$(VENV)/.installed-app: constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c constraints.txt -e ".[app]"
	touch $@

bytecode: $(VENV)/.installed-app
	$(PY) -m compileall -qq $(APP_SOURCES) || true

# So are the default page's chart templates (ui/compile_templates.py: it runs that page once, about 3 s): a fresh
# server's first page then draws its charts without importing Altair or building them (0.3 s of it on 2 cores).
# Only when the chart code changed since; where it cannot write, it says so and the app builds them as it goes.
templates: bytecode
	$(PY) -m ui.charts.compiled || $(PY) -m ui.compile_templates

run: bytecode templates
	$(PY) -m streamlit run app.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Debian's chromium for the real-browser test (Playwright's own browser download
# does not work offline). Needs root / sudo.
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# Re-pin after editing requirements.txt: resolve the lower bounds afresh in a scratch venv, freeze it.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/pip install -r requirements.txt
	(echo "# Exact versions installed by make run, make test and CI (pip constraints; see README \"Pinned environment\")."; \
	 echo "# Regenerate after changing requirements.txt: make constraints"; \
	 .venv-pin/bin/pip freeze --exclude-editable | sort -f) > constraints.txt
	rm -rf .venv-pin

clean-venv:
	rm -rf $(VENV)
