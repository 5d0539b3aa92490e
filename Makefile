# Two commands from a fresh clone: `make report` (the report on the stand-in data) and `make test`.
# Both create the virtual environment .venv on first use and install the project into it (editable).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
DATA ?=
DEVICE ?= auto
# FAST_DEV_RUN=1: every training capped at 2 epochs of 2 batches (1 validation batch) at the profile's real sizes
FAST_DEV_RUN ?= 0

.PHONY: test lint report standin bench lab clean-runs

# the exact CPU build (constraints/cpu.txt) inside pyproject.toml's supported ranges; on a machine that already
# has PyTorch (with CUDA) install without the constraints instead (README, "Install beside an existing PyTorch")
CONSTRAINTS ?= constraints/cpu.txt

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev]"
	touch $@

test: lint
	bash scripts/install_pdf_tools.sh
	$(PY) -m pytest

# the `full` profile's fast dev run end to end (every notebook at full's real sizes on its fast dev stand-in;
# about 15 minutes on 2 idle cores from cold, 20 GB of memory): what CI runs after `make test`
.PHONY: test-full
test-full: $(VENV)/.installed
	bash scripts/install_pdf_tools.sh
	HW1_TEST_FULL_FAST_DEV_RUN=1 $(PY) -m pytest tests/test_full_fast_dev_run.py -m slow; status=$$?; \
	if [ $$status -eq 5 ]; then echo "test-full: pytest collected no test (exit 5)" >&2; fi; exit $$status

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check hw1lib tests benchmarks
	$(VENV)/bin/ruff format --check hw1lib tests benchmarks

report: $(VENV)/.installed
	bash scripts/install_pdf_tools.sh
	$(PY) -m hw1lib report --profile $(PROFILE) --data "$(DATA)" --device $(DEVICE) \
		$(if $(filter 1,$(FAST_DEV_RUN)),--fast-dev-run)

standin: $(VENV)/.installed
	$(PY) -m hw1lib standin data/standin-$(PROFILE) --size $(PROFILE)

# `make train EXP=p2_model_b PROFILE=full NPROC=4`: one experiment into the run folder its notebook uses
# (then reused by the notebooks and `make report`); NPROC > 1 trains on that many processes under torchrun
EXP ?=
NPROC ?= 1
TRAIN_LAUNCH = $(if $(filter 1,$(NPROC)),$(PY),$(VENV)/bin/torchrun --standalone --nproc-per-node $(NPROC))
.PHONY: train
train: $(VENV)/.installed
	$(if $(EXP),,$(error EXP is required: p1_model_a, p1_model_b, p2_model_a or p2_model_b))
	$(TRAIN_LAUNCH) -m hw1lib train $(EXP) --profile $(PROFILE) --data "$(DATA)" --device $(DEVICE) \
		$(if $(filter 1,$(FAST_DEV_RUN)),--fast-dev-run)

bench: $(VENV)/.installed
	$(PY) -m benchmarks.bench --device $(DEVICE) --out benchmarks/results-$(DEVICE).json

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

clean-runs:
	rm -rf runs/smoke report/smoke
