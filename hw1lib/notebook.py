"""The set-up every training notebook (01-05) starts with, in one call.

``setup(experiment="p1_model_a", profile="demo", seed=0, overrides={...})`` resolves (or generates) the data
of the experiment's problem, decodes it, picks the run and figure folders and returns a :class:`Session`
that trains the experiment into its run folder (or reuses it), finds the runs of its recipe, titles figures
with the registry's labels and saves them. The notebooks then read as prose over package calls.

Which run a notebook shows: the one of its recipe (profile, the ``overrides`` given, ``seed``), found by
its stored configuration (:func:`hw1lib.runs.find_run`), never merely the newest run of the experiment.

``fast_dev_run=True`` (the idea of Lightning's ``fast_dev_run``) trains every experiment at the profile's real
sizes but capped (:data:`hw1lib.config.FAST_DEV_RUN`), into ``runs/<profile>-fastdev`` with figures in
``figures/<profile>-fastdev``: it proves the whole path in minutes and its numbers mean nothing.

What this is not: training code (:mod:`hw1lib.engine`) or a report (:mod:`hw1lib.report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hw1lib.config import FAST_DEV_RUN, TrainConfig, get_config, recipe_record, without_seed
from hw1lib.data import DataRoot, check_profile_and_seed, data_source, prepare_data_root
from hw1lib.experiments import get_experiment
from hw1lib.paths import figures_dir
from hw1lib.runs import Run, default_out_root, find_run, load_run, profile_folder


@dataclass
class Session:
    """What a notebook works with: its experiment, the data, where runs and figures go, the run parameters."""

    experiment: str
    root: DataRoot
    train: object
    val: object
    out_root: Path
    figures: Path
    profile: str
    device: str
    seed: int
    force: bool
    fast_dev_run: bool = False
    overrides: dict = field(default_factory=dict)  # of this notebook's experiment only
    data_seed: int = 0

    def summary(self) -> str:
        """One Markdown line: which data, how much, and where runs and figures go (and a fast dev run's caps)."""
        unit = "images" if hasattr(self.train, "labels") else "pairs"
        seeds = f"training seed {self.seed}" + (f", stand-in data seed {self.data_seed}" if self.data_seed else "")
        line = (
            f"**Data:** {data_source(self.root)} (`{self.root.root}`): {len(self.train)} training and "
            f"{len(self.val)} validation {unit}; {seeds}. Runs go to `{self.out_root}`, figures to `{self.figures}`."
        )
        if self.fast_dev_run:
            caps = FAST_DEV_RUN
            line += (
                f"\n\n**Fast dev run:** every training is capped at {caps['epochs']} epochs of "
                f"{caps['max_train_batches']} batches and {caps['max_eval_batches']} validation batches, at the "
                "profile's real sizes; the numbers below mean nothing."
            )
        return line

    def _overrides_of(self, experiment: str, overrides: dict | None) -> dict:
        if overrides is not None:
            return overrides
        return self.overrides if experiment == self.experiment else {}

    def config(self, experiment: str | None = None, overrides: dict | None = None) -> TrainConfig:
        """The ``TrainConfig`` of ``experiment`` (default: this notebook's) under this session's profile and seed,
        with this notebook's overrides for its own experiment (another experiment: its recipe, unless
        ``overrides`` are given), capped in a fast dev run."""
        experiment = experiment or self.experiment
        return get_config(
            experiment,
            self.profile,
            fast_dev_run=self.fast_dev_run,
            **{**self._overrides_of(experiment, overrides), "seed": self.seed},
        )

    def recipe_line(self, experiment: str | None = None) -> str:
        """One Markdown line under the recipe table: the overrides of the recipe in force, or that there are none."""
        from hw1lib.report import recipe_line

        experiment = experiment or self.experiment
        return recipe_line(experiment, self.profile, self.config(experiment).to_dict())

    def title(self, what: str = "", experiment: str | None = None) -> str:
        """A figure title from the registry: ``"P1 model A (VGG-like CNN): validation confusion matrix"``."""
        from hw1lib.models import model_label

        experiment = experiment or self.experiment
        text = f"{get_experiment(experiment).label} ({model_label(self.config(experiment).model)})"
        return f"{text}: {what}" if what else text

    def train_experiment(self, experiment: str | None = None) -> tuple[Run, str]:
        """Train ``experiment`` (default: this notebook's) or reuse its finished run; return the run and a
        Markdown line about it."""
        from hw1lib.fit import fit

        experiment = experiment or self.experiment
        config = self.config(experiment)
        result = fit(
            config,
            self.train,
            self.val,
            self.out_root,
            experiment,
            device=self.device,
            force=self.force,
            recipe=recipe_record(experiment, self.profile, config, self.fast_dev_run),
        )
        run = load_run(result["run_dir"])
        line = (
            f"Run folder `{run.run_dir.name}` ({_action(result)}): "
            f"{run.metrics['final_epoch']} epochs, {run.metrics['train_seconds']:.0f} s of training; "
            f"{run.metrics['stop_reason']}. Weights: {run.metrics['weights_source']}."
        )
        for note in result.get("notes", []):
            line += f"\n\n**Note:** {note}"
        return run, line

    def current(self, experiment: str | None = None, overrides: dict | None = None) -> Run:
        """The finished run of ``experiment``'s recipe under this session (profile, overrides, seed, and this
        session's data when it is the same problem's), whatever else was trained later.

        Raises:
            FileNotFoundError: no such run (names what was looked for and how the runs found differ).
        """
        experiment = experiment or self.experiment
        same_data = get_experiment(experiment).problem == get_experiment(self.experiment).problem
        data = {"train": self.train.key, "val": self.val.key} if same_data else None
        return find_run(self.out_root, experiment, self.config(experiment, overrides).to_dict(), data)

    def found_runs(self, *experiments: str) -> dict[str, Run]:
        """``{experiment: run}`` of those ``experiments`` whose run (:meth:`current`) exists, in the order given:
        a side-by-side table shows what is there instead of failing on a run that was trained with overrides."""
        runs = {}
        for experiment in experiments:
            try:
                runs[experiment] = self.current(experiment)
            except FileNotFoundError:
                continue
        return runs

    def save(self, fig, name: str):
        """Write ``fig`` to this profile's figure folder as ``name.png`` and return it (to display it)."""
        from hw1lib.viz import save_figure

        save_figure(fig, name, folder=self.figures)
        return fig


def _action(result: dict) -> str:
    """How ``fit`` got its run: reused, resumed from an interrupted run's last complete epoch, or trained now."""
    if result["reused"]:
        return "reused"
    if result.get("resumed_from_epoch"):
        return f"resumed from epoch {result['resumed_from_epoch']} of {result['epochs_planned']}"
    return "trained now"


def setup(
    experiment: str,
    *,
    data_root: str = "",
    profile: str = "demo",
    seed: int = 0,
    data_seed: int = 0,
    out_dir: str = "",
    device: str = "auto",
    force: bool = False,
    fast_dev_run: bool = False,
    overrides: dict | None = None,
) -> Session:
    """Resolve or generate the data of ``experiment``'s problem, decode it, and return a Session.

    Args:
        experiment: a registered experiment (:mod:`hw1lib.experiments`): the notebook's own.
        data_root: the real data root, or ``""`` for the profile's generated stand-in.
        profile: ``smoke``, ``demo`` or ``full``.
        seed: the training seed (weights, shuffling, augmentation); part of the run's name.
        data_seed: the stand-in's content seed (ignored for real data); 0 is the profile's stand-in.
        out_dir: the folder of run folders (``""``: ``runs/<profile>``).
        device: ``auto``, ``cpu``, ``cuda``...
        force: retrain even when a finished run with identical parameters exists.
        fast_dev_run: cap every training (see the module docstring) and use the profile's ``-fastdev`` folders.
        overrides: fields of the experiment's recipe to change (``{"lr": 1e-3, "augment.flip": False}``),
            checked here, before any data is generated.

    Raises:
        ValueError: an unknown experiment, profile, override key or a value of the wrong type.
        FileNotFoundError: the data root does not hold the problem's folders (names what was looked for).
    """
    spec = get_experiment(experiment)
    check_profile_and_seed(profile, seed)  # `-p seed abc` / `-p profile nonsense`: one line, before anything else
    overrides = without_seed(overrides)
    get_config(experiment, profile, fast_dev_run=fast_dev_run, **overrides)  # a typo fails before the data
    root = prepare_data_root(data_root, profile, data_seed, fast_dev_run=fast_dev_run)
    train, val = spec.loader(root)
    return Session(
        experiment=experiment,
        root=root,
        train=train,
        val=val,
        out_root=default_out_root(out_dir, profile, fast_dev_run),
        figures=figures_dir() / profile_folder(profile, fast_dev_run),
        profile=profile,
        device=device,
        seed=seed,
        force=force,
        fast_dev_run=fast_dev_run,
        overrides=overrides,
        data_seed=data_seed,
    )
