# Two entry points for a fresh machine: `make run` and `make test`.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test browser-deps bench clean-venv

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m streamlit run app.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Debian's chromium for the real-browser test (Playwright's own browser download
# does not work offline). Needs root / sudo.
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
