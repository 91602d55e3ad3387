# Two commands do the whole set-up on a fresh machine:
#   make demo   -> creates .venv, installs autoqvis, runs the toy-world demo (writes demo_out/)
#   make test   -> creates .venv, installs autoqvis + test tools, checks the import layers and copied code, runs the
#                  test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test venv install bench clean

$(VENV)/.installed: pyproject.toml requirements-ci.txt requirements-oracle.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-ci.txt
	$(PIP) install -q --no-deps -r requirements-oracle.txt
	$(PIP) install -q --no-deps -e .
	touch $@

venv install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/autoqvis demo --out demo_out

test: $(VENV)/.installed
	$(VENV)/bin/lint-imports  # the layers of docs/architecture.md (contracts in pyproject.toml)
	$(VENV)/bin/pylint --disable=all --enable=duplicate-code --min-similarity-lines=6 --score=n src/autoqvis
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_out build *.egg-info src/*.egg-info
