# Two commands from a fresh clone: `make report` (the report on the stand-in data) and `make test`.
# Both create the virtual environment .venv on first use and install the project into it (editable).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
DATA ?=
DEVICE ?= auto

.PHONY: test lint report standin bench lab clean-runs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: lint
	bash scripts/install_pdf_tools.sh
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check hw1lib tests benchmarks
	$(VENV)/bin/ruff format --check hw1lib tests benchmarks

report: $(VENV)/.installed
	bash scripts/install_pdf_tools.sh
	$(PY) -m hw1lib report --profile $(PROFILE) --data "$(DATA)" --device $(DEVICE)

standin: $(VENV)/.installed
	$(PY) -m hw1lib standin data/standin-$(PROFILE) --size $(PROFILE)

bench: $(VENV)/.installed
	$(PY) -m benchmarks.bench --device $(DEVICE) --out benchmarks/results-$(DEVICE).json

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs/smoke report/smoke
