# Two commands from a fresh clone: `make report` (the report on the stand-in data) and `make test`.
# Both create the virtual environment .venv on first use and install the project into it (editable).
# Every target that installs also configures the notebooks' git filter (see notebook-filter).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
DATA ?=
DEVICE ?= auto
# FAST_DEV_RUN=1: every training capped at 2 epochs of 2 batches (1 validation batch) at the profile's real sizes
FAST_DEV_RUN ?= 0

.PHONY: test lint report standin bench lab notebook-filter clean-runs tensorboard

# the exact CPU build (constraints/cpu.txt) inside pyproject.toml's supported ranges; on a machine that already
# has PyTorch (with CUDA) install without the constraints instead (README, "Install beside an existing PyTorch")
CONSTRAINTS ?= constraints/cpu.txt

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev]"
	-$(MAKE) --no-print-directory notebook-filter
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
# (then reused by the notebooks and `make report`); NPROC > 1 trains on that many processes under torchrun.
# SET="lr=1e-3 augment.flip=false" changes recipe fields (a new run folder), SEED=1 trains another seed.
EXP ?=
NPROC ?= 1
SET ?=
SEED ?= 0
EXPERIMENT_NAMES = $(shell $(PY) -c "from hw1lib.experiments import experiment_names; print(', '.join(experiment_names()))" 2>/dev/null)
TRAIN_LAUNCH = $(if $(filter 1,$(NPROC)),$(PY),$(VENV)/bin/torchrun --standalone --nproc-per-node $(NPROC))
.PHONY: train
train: $(VENV)/.installed
	$(if $(EXP),,$(error EXP is required: one of $(or $(EXPERIMENT_NAMES),the experiments of hw1lib/experiments.py)))
	$(TRAIN_LAUNCH) -m hw1lib train $(EXP) --profile $(PROFILE) --data "$(DATA)" --device $(DEVICE) --seed $(SEED) \
		$(if $(strip $(SET)),--set $(SET)) $(if $(filter 1,$(FAST_DEV_RUN)),--fast-dev-run)

bench: $(VENV)/.installed
	$(PY) -m benchmarks.bench --device $(DEVICE) --out benchmarks/results-$(DEVICE).json

# JupyterLab works on copies in lab/ (ignored by git), so running the notebooks in the browser leaves the tracked
# notebooks/*.ipynb untouched and `git status` clean; a copy is refreshed when its notebook in notebooks/ is newer
# (e.g. after a pull), never over newer work in lab/. --allow-root: containers run as root.
lab: $(VENV)/.installed
	mkdir -p lab
	for f in notebooks/*.ipynb; do [ "lab/$${f##*/}" -nt "$$f" ] || cp "$$f" lab/; done
	$(VENV)/bin/jupyter lab --allow-root lab/

# the git clean filter that .gitattributes names for notebooks/*.ipynb (scripts/strip_notebook.py, standard library
# only), configured in .git/config (shared by every worktree: the path is relative to the worktree's root): a
# notebook executed in notebooks/ itself is staged and diffed without its outputs
notebook-filter:
	git config filter.strip-notebook.clean "python3 scripts/strip_notebook.py"
	git config filter.strip-notebook.smudge cat

# live curves of every run (each run folder's tensorboard/ events; runs/, or $HW1_RUNS), at http://localhost:6006
tensorboard: $(VENV)/.installed
	$(VENV)/bin/tensorboard --logdir "$${HW1_RUNS:-runs}"

clean-runs:
	rm -rf runs/smoke report/smoke
