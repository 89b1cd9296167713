# The README's two commands: `make demo` (memorisation + steer, one index) and `make test`.
# Both create or reuse .venv and install what they need from PyPI.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
OUT    ?= out/demo

.PHONY: demo test check bench clean-venv

# torch is pinned in the `lm` extra (==2.13.0): an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed-core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[lm,report]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-core
	$(PY) -m pip install -q -e '.[lm,report,bayes,ray,scale,detox,dev]'
	touch $@

demo: $(VENV)/.installed-core
	$(PY) analyses/00_demo/run.py --out $(OUT)

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q -p no:cacheprovider

# Lint, format and type checks (run by .ci/run before the tests).
check: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-dev
	$(PY) bench/did_vs_peers.py

clean-venv:
	rm -rf $(VENV)
