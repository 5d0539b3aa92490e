"""The set-up every training notebook (01-05) starts with, in one call.

``setup(problem, data_root, profile, seed, out_dir)`` resolves (or generates) the data, decodes it, picks
the run and figure folders and returns a :class:`Session` that trains an experiment into its run folder
(or reuses it) and saves figures. The notebooks then read as prose over package calls.

``fast_dev_run=True`` (the idea of Lightning's ``fast_dev_run``) trains every experiment at the profile's real
sizes but capped (:data:`hw1lib.config.FAST_DEV_RUN`), into ``runs/<profile>-fastdev`` with figures in
``figures/<profile>-fastdev``: it proves the whole path in minutes and its numbers mean nothing.

What this is not: training code (:mod:`hw1lib.engine`) or a report (:mod:`hw1lib.report`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hw1lib.config import FAST_DEV_RUN, get_config
from hw1lib.data import DataRoot, data_source, load_problem1, load_problem2, prepare_data_root
from hw1lib.paths import figures_dir
from hw1lib.runs import Run, default_out_root, load_current, profile_folder

_LOADERS = {"p1": load_problem1, "p2": load_problem2}


@dataclass
class Session:
    """What a notebook works with: the data, where runs and figures go, and the run parameters."""

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

    def summary(self) -> str:
        """One Markdown line: which data, how much, and where runs and figures go (and a fast dev run's caps)."""
        unit = "images" if hasattr(self.train, "labels") else "pairs"
        line = (
            f"**Data:** {data_source(self.root)} (`{self.root.root}`): {len(self.train)} training and "
            f"{len(self.val)} validation {unit}. Runs go to `{self.out_root}`, figures to `{self.figures}`."
        )
        if self.fast_dev_run:
            caps = FAST_DEV_RUN
            line += (
                f"\n\n**Fast dev run:** every training is capped at {caps['epochs']} epochs of "
                f"{caps['max_train_batches']} batches and {caps['max_eval_batches']} validation batches, at the "
                "profile's real sizes; the numbers below mean nothing."
            )
        return line

    def config(self, experiment: str):
        """The experiment's ``TrainConfig`` under this session's profile and seed (capped in a fast dev run)."""
        return get_config(experiment, self.profile, fast_dev_run=self.fast_dev_run, seed=self.seed)

    def train_experiment(self, experiment: str) -> tuple[Run, str]:
        """Train ``experiment`` (or reuse its finished run) and return the run and a Markdown line about it."""
        from hw1lib.fit import fit

        result = fit(
            self.config(experiment),
            self.train,
            self.val,
            self.out_root,
            experiment,
            device=self.device,
            force=self.force,
        )
        run = load_current(self.out_root, experiment)
        line = (
            f"Run folder `{run.run_dir.name}` ({'reused' if result['reused'] else 'trained now'}): "
            f"{run.metrics['final_epoch']} epochs, {run.metrics['train_seconds']:.0f} s of training; "
            f"{run.metrics['stop_reason']}. Weights: {run.metrics['weights_source']}."
        )
        for note in result.get("notes", []):
            line += f"\n\n**Note:** {note}"
        return run, line

    def current(self, experiment: str) -> Run:
        """The finished run of ``experiment`` that this session's notebooks trained or reused."""
        return load_current(self.out_root, experiment)

    def save(self, fig, name: str):
        """Write ``fig`` to this profile's figure folder as ``name.png`` and return it (to display it)."""
        from hw1lib.viz import save_figure

        save_figure(fig, name, folder=self.figures)
        return fig


def setup(
    problem: str,
    data_root: str = "",
    profile: str = "demo",
    seed: int = 0,
    out_dir: str = "",
    device: str = "auto",
    force: bool = False,
    fast_dev_run: bool = False,
) -> Session:
    """Resolve or generate the data of ``problem`` (``"p1"`` or ``"p2"``), decode it, and return a Session.

    ``fast_dev_run`` caps every training (see the module docstring) and sends runs and figures to the
    profile's ``-fastdev`` folders.

    Raises:
        ValueError: an unknown problem.
        FileNotFoundError: the data root does not hold the problem's folders (names what was looked for).
    """
    if problem not in _LOADERS:
        raise ValueError(f"unknown problem {problem!r}; valid: {sorted(_LOADERS)}")
    root = prepare_data_root(data_root, profile, seed, fast_dev_run=fast_dev_run)
    train, val = _LOADERS[problem](root)
    return Session(
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
    )
