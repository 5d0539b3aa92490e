"""The experiment registry, overrides, seeds, and which run the notebooks and the report read (issue 18).

One module-scoped set of tiny trainings (a throwaway experiment registered here, smoke sizes, seconds each):
the recipe's run, an override run, a second seed, and a side run trained later from Python with other
parameters; the tests check that each is found by its own recipe and that the side run replaces nothing.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from hw1lib import report
from hw1lib.cli import main
from hw1lib.config import (
    DEMO_DEPARTURES,
    FAST_DEV_RUN,
    FULL_DEPARTURES,
    PROFILES,
    get_config,
    parse_overrides,
    recipe_diff,
    register_recipe,
)
from hw1lib.data import prepare_data_root
from hw1lib.data.standin import generate_standin
from hw1lib.experiments import (
    EXPERIMENTS,
    Experiment,
    experiment_names,
    experiments_of_task,
    get_experiment,
    register,
    unregister,
)
from hw1lib.notebook import setup
from hw1lib.paths import REPO_ROOT
from hw1lib.runs import find_run

TINY = "p1_tiny"
TINY_RECIPE = {
    "task": "classification",
    "num_classes": 50,
    "model": "vgg_like",
    "model_kwargs": {"widths": [4, 4, 8], "hidden": 8},
    "epochs": 1,
    "batch_size": 50,
    "eval_batch_size": 100,
    "lr": 3e-3,
    "augment": {"padding": 4, "flip": True},
}


@pytest.fixture(scope="module")
def tiny():
    """A throwaway experiment: a registry entry and a smoke recipe (reusing model A's network), removed after."""
    register(
        Experiment(
            name=TINY,
            problem="p1",
            task="classification",
            label="P1 tiny",
            notebook="99_p1_tiny",
            reference=None,
            pass_simple=0.75,
            pass_strong=0.86,
            metric_label="accuracy",
        )
    )
    register_recipe(TINY, "smoke", TINY_RECIPE)
    yield TINY
    unregister(TINY)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """The recipe's run, an override run, a seed-1 run (all through ``hw1 train``) and a later side run."""
    base = tmp_path_factory.mktemp("experiments")
    data, out = base / "data", base / "runs"
    generate_standin(data, size="smoke")
    common = ["--profile", "smoke", "--data", str(data), "--out-dir", str(out), "--device", "cpu"]
    assert main(["train", tiny, *common]) == 0
    assert main(["train", tiny, *common, "--set", "lr=0.01", "augment.flip=false", "--name", "lr-sweep"]) == 0
    assert main(["train", tiny, *common, "--seed", "1"]) == 0
    from hw1lib.fit import fit

    session = setup(tiny, data_root=str(data), profile="smoke", out_dir=str(out), device="cpu")
    side = fit(get_config(tiny, "smoke", lr=0.05), session.train, session.val, out, tiny, device="cpu", progress=False)
    return {"data": data, "out": out, "side": side["run_dir"]}


# ---- the registry ----------------------------------------------------------------------------------


def test_the_registry_holds_every_fact_the_report_needs():
    assert experiment_names()[:4] == ["p1_model_a", "p1_model_b", "p2_model_a", "p2_model_b"]
    assert experiments_of_task("segmentation") == ["p2_model_a", "p2_model_b"]
    a = get_experiment("p1_model_a")
    assert (a.label, a.notebook, a.reference, a.metric_label) == ("P1 model A", "01_p1_model_a", 0.62, "accuracy")
    with pytest.raises(ValueError, match=r"unknown experiment 'p3'.*p1_model_a"):
        get_experiment("p3")
    with pytest.raises(ValueError, match="already registered"):
        register(a)
    for name in experiment_names():
        assert (REPO_ROOT / "notebooks" / f"{get_experiment(name).notebook}.ipynb").exists()
        for profile in PROFILES:
            assert get_config(name, profile).task == get_experiment(name).task


def test_a_registered_experiment_is_a_cli_choice_and_trains_lists_and_reports(trained, tiny):
    assert tiny in experiment_names() and tiny in experiments_of_task("classification")
    runs = report.load_experiments(trained["out"], profile="smoke", experiments=[tiny])
    run = runs[tiny]
    assert run.params["recipe"] == {
        "experiment": tiny,
        "profile": "smoke",
        "overrides": {},
        "fast_dev_run": False,
        "label": None,
    }
    table = report.results_table(runs)
    row = table.iloc[0]
    assert table.index[0] == ("P1", "P1 tiny") and row["this run"] == round(run.best_value, 4)
    assert row["reference report"] == "" and row["pass (simple / strong)"] == "0.75 / 0.86"
    assert f"**{tiny}**" in report.profile_departures_text(runs, "smoke")
    assert report.figure_title(run, "learning curves") == "P1 tiny (VGG-like CNN): learning curves"
    assert report.overrides_text(runs) == ""


# ---- overrides ---------------------------------------------------------------------------------------


def test_overrides_are_parsed_as_literals():
    items = [
        "lr=1e-3",
        "epochs=20",
        "augment.flip=false",
        "patience=null",
        "model_kwargs.widths=[8, 16, 32]",
        "loss=ce",
    ]
    assert parse_overrides(items) == {
        "lr": 0.001,
        "epochs": 20,
        "augment.flip": False,
        "patience": None,
        "model_kwargs.widths": [8, 16, 32],
        "loss": "ce",
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["lr"])


def test_overrides_reach_nested_fields_and_name_what_is_valid():
    config = get_config("p1_model_a", "smoke", **{"augment.flip": False, "lr": 1, "model_kwargs.hidden": 64})
    assert config.augment == {"padding": 4, "flip": False} and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.model_kwargs == {"widths": [8, 16, 32], "hidden": 64}
    cases = {
        "lrr": r"unknown training parameters \['lrr'\]; valid: .*\blr\b",
        "augment.flp": r"unknown key 'augment.flp'; valid: augment.flip, augment.padding",
        "model_kwargs.depth": r"valid: model_kwargs.hidden, model_kwargs.widths",
        "seed.x": r"dotted keys work for: augment, model_kwargs",
    }
    for key, message in cases.items():
        with pytest.raises(ValueError, match=message):
            get_config("p1_model_a", "smoke", **{key: 1})
    for key, value in {"lr": "fast", "epochs": 1.5, "augment.flip": 1, "patience": True}.items():
        with pytest.raises(ValueError, match=f"{key} must be"):
            get_config("p1_model_a", "smoke", **{key: value})


def test_a_bad_override_on_the_command_line_is_one_line_and_exit_2(capfd):
    for item, expected in [("lrr=1", "valid: "), ("epochs=many", "epochs must be int"), ("seed=1", "--seed N")]:
        assert main(["train", "p1_model_a", "--profile", "smoke", "--set", item]) == 2
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and err.startswith("hw1 train: error: ") and expected in err


def test_recipe_diff_names_the_overrides_but_not_the_seed_or_the_fast_dev_caps():
    assert recipe_diff("p1_model_a", "demo", get_config("p1_model_a", "demo", seed=3).to_dict()) == {}
    capped = get_config("p1_model_b", "full", fast_dev_run=True).to_dict()
    assert (
        capped["max_eval_batches"] == FAST_DEV_RUN["max_eval_batches"]
        and recipe_diff("p1_model_b", "full", capped) == {}
    )
    changed = get_config("p2_model_b", "demo", **{"augment.dihedral": False, "lr": 1e-3, "seed": 2}).to_dict()
    assert recipe_diff("p2_model_b", "demo", changed) == {"augment.dihedral": False, "lr": 0.001}


def test_the_override_run_and_the_second_seed_train_into_their_own_folders(trained, tiny):
    folders = {p.parent for p in trained["out"].glob(f"{tiny}-*/metrics.json")}
    assert len(folders) == 4  # recipe, override, seed 1, side run: nothing overwritten
    override = find_run(trained["out"], tiny, get_config(tiny, "smoke", lr=0.01, **{"augment.flip": False}).to_dict())
    assert override.params["recipe"]["overrides"] == {"augment.flip": False, "lr": 0.01}
    assert override.params["recipe"]["label"] == "lr-sweep"
    seed1 = find_run(trained["out"], tiny, get_config(tiny, "smoke", seed=1).to_dict())
    assert seed1.config["seed"] == 1 and seed1.params["recipe"]["overrides"] == {}
    assert "lr=0.01" in report.overrides_text({tiny: override}) and "seed 1" in report.overrides_text({tiny: seed1})
    assert report.implementation_details(override)["setting"]["overrides of the recipe"] == (
        "augment.flip=false lr=0.01"
    )
    assert "overrides of the recipe in this run" in report.departures_text(override, "smoke")


# ---- which run the notebooks and the report read -------------------------------------------------------


def test_a_later_side_run_with_other_parameters_replaces_nothing(trained, tiny):
    out, data = trained["out"], str(trained["data"])
    recipe_run = find_run(out, tiny, get_config(tiny, "smoke").to_dict())
    assert str(recipe_run.run_dir) != trained["side"]  # the side run is the newest run of the experiment
    assert report.load_experiments(out, "smoke", experiments=[tiny])[tiny].run_dir == recipe_run.run_dir
    session = setup(tiny, data_root=data, profile="smoke", out_dir=str(out), device="cpu")
    assert session.current().run_dir == recipe_run.run_dir
    assert "unchanged (seed 0)" in session.recipe_line()
    changed = {"lr": 0.01, "augment.flip": False}
    with_overrides = setup(tiny, data_root=data, profile="smoke", out_dir=str(out), device="cpu", overrides=changed)
    assert with_overrides.current().params["recipe"]["label"] == "lr-sweep"
    assert list(with_overrides.found_runs("p1_model_a", tiny)) == [tiny]  # no model A run here: left out
    assert "with overrides** `augment.flip=false lr=0.01`" in with_overrides.recipe_line()
    by_report = report.load_experiments(out, "smoke", overrides={tiny: changed}, experiments=[tiny])
    assert by_report[tiny].run_dir == with_overrides.current().run_dir
    seed1 = setup(tiny, data_root=data, profile="smoke", seed=1, out_dir=str(out), device="cpu")
    assert seed1.current().config["seed"] == 1
    assert report.load_experiments(out, "smoke", seed=1, experiments=[tiny])[tiny].run_dir == seed1.current().run_dir
    with pytest.raises(FileNotFoundError, match=rf"no finished run of {tiny} .* lr \(0.003 here, 0.2 asked\)"):
        report.load_experiments(out, "smoke", overrides={tiny: {"lr": 0.2}}, experiments=[tiny])
    with pytest.raises(ValueError, match="overrides for unknown experiments"):
        report.load_experiments(out, "smoke", overrides={"p9": {}})


# ---- seeds ---------------------------------------------------------------------------------------------------


def test_a_training_seed_reuses_the_stand_in_and_a_data_seed_has_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr("hw1lib.data.standin_dir", lambda size: tmp_path / f"standin-{size}")
    first = setup("p1_model_a", profile="smoke", seed=0)
    second = setup("p1_model_a", profile="smoke", seed=1)  # was: "already holds a different stand-in"
    assert first.root == second.root and first.train.key == second.train.key
    assert second.config().seed == 1 and first.config().seed == 0
    other = prepare_data_root("", "smoke", data_seed=1)
    assert other.root.name == "standin-smoke-seed1" and other.root != first.root
    assert json.loads((other.root / "standin.json").read_text())["seed"] == 1


# ---- the departures' prose against the recipes ------------------------------------------------------------

#: (pattern, what it states): every number the departures' prose quotes is checked against the recipe
_PROSE_NUMBERS = [
    (r"\b(\d+) epochs", lambda c: c.epochs),
    (r"\bbatch (\d+)", lambda c: c.batch_size),
    (r"\blr (\d[\d.e-]*\d)", lambda c: c.lr),
    (r"\bpatience (\d+)", lambda c: c.patience),
    (r"\bweight decay (\d[\d.e-]*\d)", lambda c: c.weight_decay),
    (r"\bwidths (\d+(?:/\d+)+)", lambda c: "/".join(map(str, c.model_kwargs["widths"]))),
    (r"\bhidden (\d+)", lambda c: c.model_kwargs["hidden"]),
    (r"\b(\d+)-epoch warm-up", lambda c: c.warmup_epochs),
    (r"\bdropout (\d[\d.]*)", lambda c: c.model_kwargs["dropout"]),
    (r"fc6/fc7 (\d+) wide", lambda c: c.model_kwargs["fc_channels"]),
    (r"\bat (\d+) px", lambda c: c.model_kwargs["input_size"]),
    (r"\bon (\d+) px crops", lambda c: c.augment["out_size"]),
]


def _same(text: str, value: object) -> bool:
    if isinstance(value, str):
        return text == value
    return float(text) == float(value)


@pytest.mark.parametrize("profile, departures", [("demo", DEMO_DEPARTURES), ("full", FULL_DEPARTURES)])
def test_every_number_the_departures_quote_is_the_recipe(profile, departures):
    assert set(departures) == set(EXPERIMENTS) - {TINY}
    checked = 0
    for name, items in departures.items():
        config = get_config(name, profile)
        for item in items:
            for pattern, field in _PROSE_NUMBERS:
                match = re.search(pattern, item)  # the first: "100 epochs instead of 50" states the recipe first
                if match:
                    assert _same(match.group(1), field(config)), (profile, name, pattern, match.group(0))
                    checked += 1
    assert checked >= (8 if profile == "demo" else 3)


# ---- the notebooks ---------------------------------------------------------------------------------------------


NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_stored_clean_and_read_easily(path):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)  # no outputs in git
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and code[0] is parameters[0]
    for statement in ast.parse(parameters[0].source).body:  # typed literals, each with a why-comment
        assert isinstance(statement, ast.AnnAssign) and ast.literal_eval(statement.value) is not None
    assert all("  # " in line for line in parameters[0].source.splitlines())
    if path.stem != "06_report":
        assert "overrides: dict = {}  # " in parameters[0].source
    else:
        assert "seed: int = 0  # " in parameters[0].source and "overrides: dict = {}  # " in parameters[0].source
    body = [ast.parse("\n".join(x for x in c.source.splitlines() if not x.startswith("%"))) for c in code[1:]]
    imports = [i for i, tree in enumerate(body) if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body)]
    assert imports == [0], "imports in one cell, the first after the parameters"
    calls = [
        n for tree in body for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup"
    ]
    assert all(len(call.args) == 1 and call.keywords for call in calls)  # the experiment, then keywords
    source = "\n".join(c.source for c in code)
    assert not re.search(r"\"P[12] model [AB]", source) and ".values()" not in source.replace(
        "EXPERIMENTS.values()", ""
    )
    assert "for i in ids" not in source and "list(zip(pairs" not in source  # in viz/report functions now


def test_the_strip_filter_passes_clean_notebooks_unchanged():
    script = REPO_ROOT / "scripts" / "strip_notebook.py"
    for path in NOTEBOOKS:
        out = subprocess.run([sys.executable, str(script)], input=path.read_bytes(), capture_output=True, check=True)
        assert out.stdout == path.read_bytes(), path.name


def _make(*args: str) -> subprocess.CompletedProcess:
    """``make ARGS`` in the repository as a user would type it: not as a sub-make of ``make test`` (whose
    MAKEFLAGS/MAKELEVEL would add "Entering/Leaving directory" lines to what it prints)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, env=env)


def _make_dry_run(target: str) -> list[str]:
    """The commands ``make -n TARGET`` would run (nothing runs)."""
    return _make("-n", target).stdout.splitlines()


def _git(folder, *args: str) -> str:
    names = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env = {**os.environ, **names}
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True, env=env).stdout


needs_git_and_make = pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="git, make")


@needs_git_and_make
def test_make_train_passes_overrides_and_the_seed_and_names_the_experiments():
    line = next(x for x in _make_dry_run_with("train", "EXP=p1_model_a", "SET=lr=1e-3 augment.flip=false", "SEED=1"))
    assert "-m hw1lib train p1_model_a" in line and "--seed 1" in line and "--set lr=1e-3 augment.flip=false" in line
    assert "--set" not in next(_make_dry_run_with("train", "EXP=p1_model_a"))
    missing = subprocess.run(["make", "-n", "train"], cwd=REPO_ROOT, capture_output=True, text=True)
    builtin = ", ".join(name for name in experiment_names() if name != TINY)  # make sees a fresh registry
    assert missing.returncode != 0 and f"EXP is required: one of {builtin}." in missing.stderr


def _make_dry_run_with(target: str, *variables: str):
    """The ``hw1lib train`` lines ``make -n TARGET VARIABLES`` would run."""
    dry = _make("-n", target, *variables)
    return (x for x in dry.stdout.replace("\\\n", " ").splitlines() if "-m hw1lib train" in x)


@needs_git_and_make
def test_make_lab_runs_copies_as_root_so_git_status_stays_clean(tmp_path):
    commands = _make_dry_run("lab")
    assert commands[-1].endswith("jupyter lab --allow-root lab/")
    copy = next(line for line in commands if line.startswith("for f in notebooks/"))
    shutil.copytree(REPO_ROOT / "notebooks", tmp_path / "notebooks")
    subprocess.run(["sh", "-c", f"mkdir -p lab && {copy}"], cwd=tmp_path, check=True)
    copied = tmp_path / "lab" / NOTEBOOKS[0].name
    assert copied.read_bytes() == NOTEBOOKS[0].read_bytes()
    copied.write_text("work in the browser, newer than the tracked notebook")
    subprocess.run(["sh", "-c", copy], cwd=tmp_path, check=True)
    assert copied.read_text().startswith("work in the browser")  # never overwritten
    assert _git(REPO_ROOT, "check-ignore", "lab/01_p1_model_a.ipynb").strip() == "lab/01_p1_model_a.ipynb"


@needs_git_and_make
def test_the_filter_make_configures_keeps_outputs_out_of_what_git_stores(tmp_path):
    commands = [line for line in _make_dry_run("notebook-filter") if line.startswith("git config")]
    assert len(commands) == 2 and "scripts/strip_notebook.py" in commands[0]
    _git(tmp_path, "init", "-q", ".")
    for command in commands:
        subprocess.run(command, shell=True, cwd=tmp_path, check=True)
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO_ROOT / "scripts" / "strip_notebook.py", tmp_path / "scripts")
    shutil.copy(REPO_ROOT / ".gitattributes", tmp_path)
    (tmp_path / "notebooks").mkdir()
    clean = NOTEBOOKS[0].read_text()
    executed = nbformat.reads(clean, as_version=4)
    for i, cell in enumerate(c for c in executed.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="trained\n")]
    target = tmp_path / "notebooks" / NOTEBOOKS[0].name
    target.write_text(nbformat.writes(executed))
    _git(tmp_path, "add", "-A")
    assert _git(tmp_path, "show", f":notebooks/{target.name}") == clean  # staged: the notebook without outputs
    _git(tmp_path, "commit", "-q", "-m", "x")
    executed.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="run again\n")]
    target.write_text(nbformat.writes(executed))
    assert _git(tmp_path, "diff") == ""  # outputs alone are no change
    assert "trained" in target.read_text()  # the file on disk keeps them


def test_plot_kept_masks_reads_masks_keyed_by_id_in_the_inputs_order():
    import numpy as np

    from hw1lib.viz import plot_kept_masks

    images = {i: np.full((8, 8, 3), k * 40, np.uint8) for k, i in enumerate(["0013", "0062"])}
    truths = {i: np.full((8, 8), k, np.int64) for k, i in enumerate(images)}
    columns = {"epoch 1 (early)": {"0062": truths["0062"], "0013": truths["0013"]}}
    fig = plot_kept_masks(images, truths, columns, title="t")
    assert len(fig.axes) >= 6 and [ax.get_ylabel() for ax in fig.axes[::3]][:2] == ["0013", "0062"]


@pytest.mark.skipif(shutil.which("ruff") is None and not (REPO_ROOT / ".venv" / "bin" / "ruff").exists(), reason="ruff")
def test_notebook_code_has_no_unused_or_undefined_names():
    ruff = shutil.which("ruff") or str(REPO_ROOT / ".venv" / "bin" / "ruff")
    paths = [str(p) for p in NOTEBOOKS]
    result = subprocess.run([ruff, "check", "--select", "F,I", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
