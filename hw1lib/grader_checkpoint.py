"""Which checkpoint the grader's commands use: the file or run folder given, or the rule README states.

The rule (:func:`choose_checkpoint`): the most complete profile (:data:`hw1lib.run_summary.PROFILE_ORDER`) that has a
finished run of the task trained without overrides (any seed; never a fast dev run), then the best validation
score among that profile's such runs. Whatever decides, :meth:`Choice.describe` says it in one line, so a grade
never comes from an unnamed model. Run folders are read through :mod:`hw1lib.runs`, their one owner.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hw1lib.paths import runs_dir
from hw1lib.run_summary import PROFILE_ORDER, read_json, recipe_of, summarize
from hw1lib.runs import BEST, METRICS, PARAMS, RunFolder


@dataclass(frozen=True)
class Choice:
    """The checkpoint the grader's commands use, and why (said in one line by :meth:`describe`)."""

    task: str
    path: Path
    how: str  # "rule" (the grader's rule), "run" (--run / HW1_RUN) or "checkpoint" (--checkpoint / HW1_CHECKPOINT)
    run_dir: Path | None = None
    experiment: str | None = None
    profile: str | None = None
    metric: str | None = None
    score: float | None = None
    epoch: int | None = None

    def describe(self) -> str:
        """One line naming the file, the run (folder, experiment, profile, score) and how it was chosen."""
        if self.how == "checkpoint":
            return f"{self.path} (given by --checkpoint / HW1_CHECKPOINT)"
        score = "no recorded score" if self.score is None else f"best val {self.metric} {self.score:.4f}"
        if self.epoch is not None:
            score += f" at epoch {self.epoch}"
        what = f"{self.path}: run {self.run_dir}, experiment {self.experiment}, profile {self.profile}, {score}"
        if self.how == "run":
            return f"{what} (given by --run / HW1_RUN)"
        return f"{what} (the grader's rule, see README; HW1_RUN or HW1_CHECKPOINT choose another)"


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def choose_checkpoint(task: str, root: Path | None = None, warn: Callable[[str], None] = _stderr) -> Choice:
    """The grader's rule: ``best.pt`` of the best recipe run of ``task`` in the most complete profile.

    The profile: the first of :data:`PROFILE_ORDER` (``full``, ``demo``, ``smoke``) holding a finished run of
    ``task`` trained without overrides (any seed); fast dev runs never count. Then, among that profile's such
    runs (any experiment of the task), the best validation score (ties: the later finished). A run whose
    ``metrics.json`` or ``params.json`` cannot be read is named through ``warn``, never skipped silently.

    Args:
        task: ``classification`` or ``segmentation``.
        root: the folder of profile folders (default: ``runs/``, or ``$HW1_RUNS``).
        warn: called with one line per unreadable run.

    Raises:
        FileNotFoundError: no such run (says where it looked, what was left out and what to do).
    """
    root = Path(root) if root is not None else runs_dir()
    candidates: list[tuple[int, float, float, Choice]] = []
    left_out: list[str] = []
    for metrics_file in sorted(root.rglob(METRICS)):
        run_dir = metrics_file.parent
        found = _finished_run_of(task, run_dir, warn)
        if found is None:
            continue
        params, metrics = found
        recipe = recipe_of(run_dir, params)
        if recipe["fast_dev_run"] or recipe["profile"] not in PROFILE_ORDER:
            continue
        if recipe["overrides"] is None or set(recipe["overrides"]) - {"seed"}:  # any seed is the recipe
            left_out.append(run_dir.name)
            continue
        choice = _rule_choice(task, run_dir, recipe, metrics, warn)
        if choice is not None:
            rank = -PROFILE_ORDER.index(recipe["profile"])
            candidates.append((rank, choice.score, metrics_file.stat().st_mtime, choice))
    if not candidates:
        others = ""
        if left_out:
            others = f"; left out {len(left_out)} run(s) trained with overrides: {', '.join(left_out[:5])}"
        raise FileNotFoundError(
            f"no finished {task} run of a recipe (profile full, demo or smoke, no overrides, not a fast dev run) "
            f"under {root}{others}; train one (the notebooks, `make report` or `hw1 train`), or choose one with "
            "--run RUN_DIR / HW1_RUN, or --checkpoint PATH / HW1_CHECKPOINT"
        )
    return max(candidates, key=lambda c: c[:3])[3]


def _finished_run_of(task: str, run_dir: Path, warn: Callable[[str], None]) -> tuple[dict, dict] | None:
    """``(params, metrics)`` of a finished run of ``task`` with a ``best.pt``; None otherwise, after a warning
    naming the run when a file of it cannot be read (unless its readable params say it is of the other task)."""
    params, params_problem = read_json(run_dir / PARAMS)
    config = (params or {}).get("config")
    if isinstance(config, dict) and config.get("task") not in (None, task):
        return None
    metrics, metrics_problem = read_json(run_dir / METRICS)
    if params is None or metrics is None:
        warn(f"warning: left out run {run_dir}: {params_problem or metrics_problem}")
        return None
    if metrics.get("task") != task or not (run_dir / BEST).exists():
        return None
    return params, metrics


def _rule_choice(task: str, run_dir: Path, recipe: dict, metrics: dict, warn: Callable[[str], None]) -> Choice | None:
    """The :class:`Choice` of a recipe run, or None (after a warning) when it records no score."""
    metric = metrics.get("metric")
    score = metrics.get(f"best_val_{metric}")
    if not isinstance(score, (int, float)) or score != score:  # missing or NaN
        warn(f"warning: left out run {run_dir}: metrics.json has no best_val_{metric} score")
        return None
    facts = {"experiment": recipe["experiment"], "profile": recipe["profile"], "metric": metric, "best": float(score)}
    return _run_choice(task, run_dir, "rule", {**facts, "best_epoch": metrics.get("best_epoch")})


def _run_choice(task: str, run_dir: Path, how: str, facts: dict) -> Choice:
    """The :class:`Choice` of ``run_dir``'s ``best.pt``; ``facts`` has :func:`hw1lib.run_summary.summarize`'s
    experiment, profile, metric, best and best_epoch."""
    return Choice(
        task,
        run_dir / BEST,
        how,
        run_dir,
        facts["experiment"],
        facts["profile"],
        facts["metric"],
        facts["best"],
        facts["best_epoch"],
    )


def checkpoint_choice(
    task: str,
    checkpoint: str | Path | None = None,
    run: str | Path | None = None,
    root: Path | None = None,
    warn: Callable[[str], None] = _stderr,
) -> Choice:
    """The checkpoint of the grader's commands: the file given, ``best.pt`` of the run folder given, or the rule's.

    Raises:
        ValueError: both given, a folder given as the checkpoint, or a file given as the run.
        FileNotFoundError: what was given does not exist, or the run folder has no ``best.pt``; no run for the rule.
    """
    if checkpoint and run:
        raise ValueError(
            "give a checkpoint (--checkpoint / HW1_CHECKPOINT) or a run folder (--run / HW1_RUN), not both"
        )
    if checkpoint:
        path = Path(checkpoint)
        if path.is_dir():
            raise ValueError(
                f"checkpoint {path} is a folder, not a checkpoint file; for a run folder use --run {path} "
                f"(HW1_RUN={path} for hw1_1.sh/hw1_2.sh), or name its {BEST}"
            )
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path} does not exist (--checkpoint / HW1_CHECKPOINT)")
        return Choice(task=task, path=path, how="checkpoint")
    if run:
        run_dir = Path(run)
        if not run_dir.exists():
            raise FileNotFoundError(f"run folder {run_dir} does not exist (--run / HW1_RUN)")
        if not run_dir.is_dir():
            raise ValueError(
                f"run {run_dir} is a file, not a run folder; for a checkpoint file use --checkpoint {run_dir} "
                f"(HW1_CHECKPOINT={run_dir} for hw1_1.sh/hw1_2.sh)"
            )
        if not (run_dir / BEST).exists():
            raise FileNotFoundError(
                f"{run_dir / BEST} is missing: {run_dir} is not a run folder, or its training has not finished an epoch"
            )
        return _run_choice(task, run_dir, "run", summarize(RunFolder(run_dir)))
    return choose_checkpoint(task, root, warn)
