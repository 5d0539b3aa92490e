"""The experiment registry: every fact about an experiment in one place.

An experiment is a named training (``p1_model_a``) of one problem: its task, the loader of its data, the
notebook that trains it, the label figures and the report give it, and the reference report's score beside
the course's pass marks. Everything that lists experiments reads :data:`EXPERIMENTS`: the CLI's choices, the
report build's notebook list, the report's tables and paragraphs, the GPU check and the tests. Its training
recipe per profile lives in :mod:`hw1lib.recipes` (added with ``hw1lib.config.register_recipe``).

A new experiment is therefore a :func:`register` call (or an entry below), a recipe per profile and a
notebook (plus a builder in :mod:`hw1lib.models` if the model is new).

What this is not: the recipes (:mod:`hw1lib.recipes`) or the run folders (:mod:`hw1lib.runs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hw1lib.data import load_problem1, load_problem2

#: the loader of each problem's data: ``loader(data_root) -> (train, val)``
LOADERS: dict[str, Callable] = {"p1": load_problem1, "p2": load_problem2}
TASK_OF_PROBLEM = {"p1": "classification", "p2": "segmentation"}
METRIC_LABEL_OF_TASK = {"classification": "accuracy", "segmentation": "mIoU"}


@dataclass(frozen=True)
class Experiment:
    """One experiment's facts (its recipe per profile is in :mod:`hw1lib.recipes`)."""

    name: str  # the run folders' prefix and the CLI's argument, e.g. "p1_model_a"
    problem: str  # "p1" or "p2": which data (LOADERS) it trains on
    task: str  # "classification" or "segmentation"
    label: str  # what titles and tables call it, e.g. "P1 model A"
    notebook: str  # the notebook (without .ipynb) that trains it, e.g. "01_p1_model_a"
    reference: float | None  # the reference report's validation score (None: no reference exists)
    pass_simple: float  # the course's pass marks for this problem (homework sheet)
    pass_strong: float
    metric_label: str  # "accuracy" or "mIoU", as the report writes it
    role: str = ""  # "model A" / "model B": its place in the homework's questions

    @property
    def loader(self) -> Callable:
        """``loader(data_root) -> (train, val)`` of the experiment's problem."""
        return LOADERS[self.problem]


def _builtin(name: str, notebook: str, reference: float, pass_marks: tuple[float, float]) -> Experiment:
    problem, role = name[:2], "model " + name[-1].upper()
    task = TASK_OF_PROBLEM[problem]
    return Experiment(
        name=name,
        problem=problem,
        task=task,
        label=f"{problem.upper()} {role}",
        notebook=notebook,
        reference=reference,
        pass_simple=pass_marks[0],
        pass_strong=pass_marks[1],
        metric_label=METRIC_LABEL_OF_TASK[task],
        role=role,
    )


# the reference report's validation numbers and the course pass marks (the course's homework sheet)
_P1_PASS, _P2_PASS = (0.75, 0.86), (0.69, 0.73)
EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        _builtin("p1_model_a", "01_p1_model_a", 0.62, _P1_PASS),
        _builtin("p1_model_b", "02_p1_model_b", 0.88, _P1_PASS),
        _builtin("p2_model_a", "04_p2_model_a", 0.57, _P2_PASS),
        _builtin("p2_model_b", "05_p2_model_b", 0.73, _P2_PASS),
    )
}
#: notebooks the report build runs that train nothing of their own, and the experiment whose run each reads
READING_NOTEBOOKS: dict[str, str] = {"03_p1_representations": "p1_model_a"}


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``.

    Raises:
        ValueError: an unknown name (the message lists the registered ones).
    """
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; valid: {list(EXPERIMENTS)}") from None


def experiment_names() -> list[str]:
    """The registered experiments' names, in registration order."""
    return list(EXPERIMENTS)


def experiments_of_task(task: str) -> list[str]:
    """The names of the experiments of ``task`` (``classification`` or ``segmentation``)."""
    return [name for name, e in EXPERIMENTS.items() if e.task == task]


def label(name: str) -> str:
    """The display label of experiment ``name`` (``"P1 model A"``)."""
    return get_experiment(name).label


def register(experiment: Experiment, replace: bool = False) -> Experiment:
    """Add ``experiment`` to the registry (its recipes go in with :func:`hw1lib.config.register_recipe`).

    Raises:
        ValueError: the name is taken (unless ``replace``), or the problem or task is unknown.
    """
    if experiment.name in EXPERIMENTS and not replace:
        raise ValueError(f"experiment {experiment.name!r} is already registered; pass replace=True to replace it")
    if experiment.problem not in LOADERS:
        raise ValueError(f"unknown problem {experiment.problem!r}; valid: {list(LOADERS)}")
    if experiment.task != TASK_OF_PROBLEM[experiment.problem]:
        raise ValueError(f"problem {experiment.problem} is a {TASK_OF_PROBLEM[experiment.problem]} problem")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def unregister(name: str) -> None:
    """Remove experiment ``name`` and its recipes (tests clean up with it)."""
    from hw1lib.config import unregister_recipes

    EXPERIMENTS.pop(name, None)
    unregister_recipes(name)


def notebook_experiment(notebook: str) -> str | None:
    """The experiment a notebook trains or reads (``None``: none registered)."""
    owners = {e.notebook: name for name, e in EXPERIMENTS.items()} | READING_NOTEBOOKS
    return owners.get(notebook)


def training_notebooks() -> list[str]:
    """The notebooks the report build runs before the report, in order: each experiment's notebook and the
    reading notebooks (:data:`READING_NOTEBOOKS`), sorted by their number prefix."""
    notebooks = {e.notebook for e in EXPERIMENTS.values()} | set(READING_NOTEBOOKS)
    return sorted(notebooks)
