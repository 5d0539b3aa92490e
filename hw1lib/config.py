"""What decides a training run: ``TrainConfig``, resolving a recipe with overrides, reading overrides back.

The recipes themselves (each experiment under ``smoke``, ``demo`` and ``full``) and their departures from the
reference report are data, in :mod:`hw1lib.recipes`.

Every field of ``TrainConfig`` is part of the run folder's name (see :mod:`hw1lib.runs`). A field added
later goes into ``ADDED_LATER`` with its default: ``to_dict`` leaves it out while it has that default, so
the runs trained before it keep their names and are reused. Symmetrically, a field removed later goes into
``REMOVED_LATER`` with the value every earlier run had: ``to_dict`` still writes it, so the same runs keep their
names; :meth:`TrainConfig.from_dict` drops it when a stored config is read back, and an override of it is
refused as unknown.

Overrides: ``get_config(experiment, profile, **{"lr": 1e-3, "augment.flip": False})`` changes fields of the
recipe (dotted keys reach into the dict fields ``augment`` and ``model_kwargs``); each is checked against the
field's type and the valid keys, so a typo fails in one line instead of training something else. The CLI's
``--set KEY=VALUE`` and the notebooks' ``overrides`` parameter go through :func:`parse_overrides` and
:func:`get_config`; :func:`recipe_diff` reads them back from a stored config. Which experiments exist is
:mod:`hw1lib.experiments`'s; a new one adds its recipes with :func:`register_recipe`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import types
import typing
from dataclasses import dataclass, field

from hw1lib.experiments import EXPERIMENTS as _REGISTRY
from hw1lib.experiments import get_experiment
from hw1lib.recipes import DEMO_DEPARTURES, FULL_DEPARTURES, MASK_IDS, RECIPES  # noqa: F401  (re-exported)


@dataclass
class TrainConfig:
    """Everything that decides a training run's result (and so its run folder's name)."""

    task: str  # "classification" or "segmentation"
    model: str  # a name from hw1lib.models.list_models()
    num_classes: int
    pretrained: bool = False
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.01  # cosine annealing ends at lr * min_lr_ratio
    patience: int | None = None  # early stopping on the validation metric; None = never
    loss: str = "ce"  # "ce" or "focal"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    aux_weight: float = 0.4  # weight of an auxiliary head's loss (segmentation)
    augment: dict = field(default_factory=dict)  # arguments of the task's batch augmentation; {} = none
    snapshot_epochs: list[int] = field(default_factory=list)  # extra weight snapshots (first and final always)
    keep_mask_ids: list[str] = field(default_factory=list)  # validation ids whose masks are kept every epoch
    max_train_batches: int | None = None  # cap per epoch (smoke and fast dev runs)
    max_eval_batches: int | None = None  # cap per validation pass (fast dev runs): metrics of a subset
    cpu_bf16: bool = False  # bf16 autocast on a CPU with AMX too (CUDA: by capability); see resolve_precision
    channels_last: bool = True  # memory format of the model and its inputs (False: NCHW, for comparisons)
    seed: int = 0
    # micro-batches per step (gradient accumulation): the global batch is still batch_size. 1 = none; fit raises
    # it on a GPU too small for the recipe's batch (hw1lib.memory), and the run's name then says so
    accumulation_steps: int = 1

    def to_dict(self) -> dict:
        """The fields as plain data (what the run's name hashes): without the later-added ones that still have
        their default, with the removed ones at the value every run had (:data:`REMOVED_LATER`)."""
        values = dataclasses.asdict(self)
        return {**{k: v for k, v in values.items() if k not in ADDED_LATER or v != ADDED_LATER[k]}, **REMOVED_LATER}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from :meth:`to_dict`'s output (a stored run's ``params.json``), removed fields dropped.

        Raises:
            ValueError: a removed field holds another value than every run had (a config this code cannot train).
        """
        changed = sorted(k for k, v in REMOVED_LATER.items() if k in values and values[k] != v)
        if changed:
            raise ValueError(f"config fields {changed} are no longer supported (only {REMOVED_LATER} is)")
        return cls(**{k: v for k, v in values.items() if k not in REMOVED_LATER})


#: fields added after runs were trained, with their defaults (left out of ``to_dict`` while at the default)
ADDED_LATER: dict[str, object] = {"max_eval_batches": None, "accumulation_steps": 1}

#: fields removed after runs were trained, with the value every run had: ``to_dict`` still writes them, so those
#: runs keep their names (``class_weights``: no recipe ever set it)
REMOVED_LATER: dict[str, object] = {"class_weights": None}

#: fields the machine sets at run time, not the user (micro-batches chosen for a GPU's free memory): part of the
#: run's name, but no override of the recipe, and ignored when the notebooks and the report look for its run
MACHINE_FIELDS: tuple[str, ...] = ("accumulation_steps",)

#: what a fast dev run caps (the idea of Lightning's ``fast_dev_run``): every training at the profile's real
#: sizes (batch and input sizes, pretrained weights, kept masks), but only this many epochs and batches. One
#: validation batch at the real evaluation batch size (plus one of the kept masks it misses) proves what a second
#: would; at 512 px on a CPU each was as costly as the training steps of its epoch (benchmarks/RESULTS.md)
FAST_DEV_RUN = {"epochs": 2, "max_train_batches": 2, "max_eval_batches": 1}


PROFILES = ("smoke", "demo", "full")
#: the built-in experiments' names (read from :mod:`hw1lib.experiments`; code that must also see experiments
#: registered later calls ``hw1lib.experiments.experiment_names()``)
EXPERIMENTS = tuple(_REGISTRY)


def register_recipe(experiment: str, profile: str, recipe: dict) -> None:
    """Add (or replace) the recipe of a registered experiment under ``profile``: ``TrainConfig`` fields.

    Raises:
        ValueError: an unknown profile or experiment, or a field ``TrainConfig`` does not have.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILES)}")
    get_experiment(experiment)
    unknown = sorted(set(recipe) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown training parameters {unknown}; valid: {sorted(_FIELDS)}")
    RECIPES[profile][experiment] = dict(recipe)


def unregister_recipes(experiment: str) -> None:
    """Remove every recipe of ``experiment`` (see :func:`hw1lib.experiments.unregister`)."""
    for recipes in RECIPES.values():
        recipes.pop(experiment, None)


def has_recipe(experiment: str, profile: str) -> bool:
    """Whether ``experiment`` has a recipe under ``profile`` (an experiment registered later may not)."""
    return experiment in RECIPES.get(profile, {})


_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
#: the dict fields whose entries dotted override keys reach (``augment.flip``)
_NESTED = ("augment", "model_kwargs")


def get_config(experiment: str, profile: str = "demo", fast_dev_run: bool = False, **overrides: object) -> TrainConfig:
    """The training configuration of ``experiment`` under ``profile``, with overrides applied.

    ``overrides`` are field values (``lr=1e-3``) or, through a dict, dotted keys into ``augment`` and
    ``model_kwargs`` (``**{"augment.flip": False}``); each is checked (:func:`check_overrides`).
    ``fast_dev_run=True`` applies :data:`FAST_DEV_RUN`'s caps (overrides still win).

    Raises:
        ValueError: unknown experiment, profile or key, or a value of the wrong type (the message lists the
            valid ones, in one line).
    """
    if profile not in RECIPES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILES)}")
    if experiment not in RECIPES[profile]:
        valid = [name for name in _REGISTRY if name in RECIPES[profile]]
        raise ValueError(f"unknown experiment {experiment!r} (profile {profile}); valid: {valid}")
    recipe = json.loads(json.dumps(RECIPES[profile][experiment]))  # a deep copy: overrides edit nested dicts
    if fast_dev_run:
        recipe |= {**FAST_DEV_RUN, "epochs": min(recipe.get("epochs", FAST_DEV_RUN["epochs"]), FAST_DEV_RUN["epochs"])}
    for key, value in check_overrides(overrides, recipe).items():
        head, _, sub = key.partition(".")
        if sub:
            recipe[head] = {**recipe.get(head, {}), sub: value}
        else:
            recipe[head] = value
    return TrainConfig(**recipe)


def check_overrides(overrides: dict[str, object], recipe: dict) -> dict[str, object]:
    """``overrides`` checked against ``TrainConfig`` and the recipe, with ints given for floats made floats.

    A dotted key must name an entry of ``augment`` or ``model_kwargs`` that the task's augmentation or the
    model's builder accepts; a value must have the field's type (or the recipe's value's type, nested).

    Raises:
        ValueError: one line naming the bad key or value and listing what is valid.
    """
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(key for key in overrides if key.partition(".")[0] not in _FIELDS)
    if unknown:
        raise ValueError(f"unknown training parameters {unknown}; valid: {', '.join(sorted(_FIELDS))}")
    checked = {}
    for key, value in overrides.items():
        head, _, sub = key.partition(".")
        if sub:
            if head not in _NESTED:
                raise ValueError(f"{head!r} has no entries ({key!r}); dotted keys work for: {', '.join(_NESTED)}")
            valid = _nested_keys(head, recipe)
            if sub not in valid:
                raise ValueError(f"unknown key {key!r}; valid: {', '.join(f'{head}.{k}' for k in valid)}")
            current = recipe.get(head, {}).get(sub)
            if current is not None and value is not None and not _same_kind(value, type(current)):
                raise ValueError(f"{key} must be a {type(current).__name__} like {current!r}, not {value!r}")
            checked[key] = float(value) if isinstance(current, float) and _same_kind(value, int) else value
            continue
        if not _matches(value, hints[head]):
            raise ValueError(f"{key} must be {_type_text(hints[head])}, not {value!r} ({type(value).__name__})")
        checked[key] = float(value) if _float_field(hints[head]) and isinstance(value, int) else value
    return checked


def _nested_keys(head: str, recipe: dict) -> list[str]:
    """The keys ``augment`` (the task's augmentation's arguments) or ``model_kwargs`` (the builder's) accept."""
    if head == "augment":
        from hw1lib.data.augment import random_crop_flip, random_dihedral_crop_scale

        function = random_crop_flip if recipe.get("task") == "classification" else random_dihedral_crop_scale
        skip = {"images", "masks", "generator"}
    else:
        from hw1lib.models import _entry

        function, skip = _entry(recipe["model"]).builder, {"num_classes", "pretrained"}
    parameters = inspect.signature(function).parameters
    return sorted(
        {name for name, p in parameters.items() if name not in skip and p.kind is p.POSITIONAL_OR_KEYWORD}
        | {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
        | set(recipe.get(head, {}))
    )


def _same_kind(value: object, kind: type) -> bool:
    """``value`` fits where a ``kind`` was: bools only for bools, ints also for floats."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _matches(value: object, hint: object) -> bool:
    """Whether ``value`` has the type ``hint`` (a ``TrainConfig`` annotation: int, float, bool, str, dict,
    ``list[X]``, ``X | None``)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    return _same_kind(value, typing.get_origin(hint) or hint)


def _float_field(hint: object) -> bool:
    return hint is float or float in typing.get_args(hint)


def _type_text(hint: object) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def parse_value(text: str) -> object:
    """A ``--set`` value as a literal: JSON (``true``, ``null``, ``1e-3``, ``[32, 64]``), then Python
    (``True``, ``None``, ``'x'``), else the text itself as a string."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
    return text


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["lr=1e-3", "augment.flip=false"]`` -> ``{"lr": 0.001, "augment.flip": False}``.

    Raises:
        ValueError: an item without ``=`` (names it and shows the expected form).
    """
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes KEY=VALUE items (e.g. lr=1e-3 augment.flip=false), not {item!r}")
        overrides[key.strip()] = parse_value(text.strip())
    return overrides


def without_seed(overrides: dict[str, object] | None) -> dict[str, object]:
    """``overrides`` for a recipe whose seed is given on its own (``--seed``, the notebooks' ``seed``).

    Raises:
        ValueError: ``seed`` among the overrides, where it would silently lose to (or fight) the seed parameter.
    """
    overrides = dict(overrides or {})
    if "seed" in overrides:
        raise ValueError("the seed is not an override: pass it on its own (--seed N, SEED=N, a notebook's `seed`)")
    return overrides


def format_overrides(overrides: dict[str, object]) -> str:
    """``lr=0.001 augment.flip=false``: overrides the way ``--set`` takes them (JSON values)."""
    return " ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())


def recipe_diff(experiment: str, profile: str, config: dict) -> dict[str, object]:
    """The fields of a run's ``config`` (a ``TrainConfig.to_dict()``) that differ from the recipe, dotted keys.

    ``seed`` and :data:`MACHINE_FIELDS` are left out, and so are a fast dev run's caps (the config is compared
    with the capped recipe when it carries them); ``{}`` means "the recipe (any seed)". Entries of
    ``augment``/``model_kwargs`` appear as ``augment.flip``; an entry the recipe has but the config lacks appears
    with the value ``None``.
    """
    caps = {k: v for k, v in FAST_DEV_RUN.items() if k != "epochs"}
    fast = all(config.get(k) == v for k, v in caps.items())
    recipe = _plain(dataclasses.asdict(get_config(experiment, profile, fast_dev_run=fast)))
    stored = _plain({k: v for k, v in {**ADDED_LATER, **config}.items() if k not in REMOVED_LATER})
    diff: dict[str, object] = {}
    for key in sorted(set(recipe) | set(stored)):
        if key == "seed" or key in MACHINE_FIELDS or recipe.get(key) == stored.get(key):
            continue
        if key in _NESTED and isinstance(stored.get(key), dict) and isinstance(recipe.get(key), dict):
            for sub in sorted(set(recipe[key]) | set(stored[key])):
                if recipe[key].get(sub) != stored[key].get(sub):
                    diff[f"{key}.{sub}"] = stored[key].get(sub)
        else:
            diff[key] = stored.get(key)
    return diff


def _plain(values: dict) -> dict:
    """JSON's view of ``values`` (tuples as lists), as a stored config reads back."""
    return json.loads(json.dumps(values))


def recipe_record(
    experiment: str, profile: str, config: TrainConfig, fast_dev_run: bool = False, label: str | None = None
) -> dict:
    """What ``params.json`` records (not hashed) about how a run was asked for: experiment, profile, the
    overrides (:func:`recipe_diff`, so without the seed), whether it was a fast dev run, and an optional label."""
    return {
        "experiment": experiment,
        "profile": profile,
        "overrides": recipe_diff(experiment, profile, config.to_dict()),
        "fast_dev_run": fast_dev_run,
        "label": label or None,
    }
