"""``python -m hw1lib train EXPERIMENT``: train one experiment into the run folder its notebook would use.

Why a command besides the notebooks: a long training (``full`` on a GPU, or on several GPUs or machines
under ``torchrun``) should not depend on a notebook kernel staying alive. It calls the same
:func:`hw1lib.fit.fit` with the same configuration (:func:`hw1lib.config.get_config`), data and
out root (:func:`hw1lib.runs.default_out_root`) as :func:`hw1lib.notebook.setup`, so the run folder has
the same name and the notebook, run afterwards, reuses the finished run instead of training again.

Under ``torchrun --nproc-per-node N`` the same command trains on N processes (see
:mod:`hw1lib.distributed`); a rerun after a failure resumes from the last complete epoch, with any
number of processes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.distributed.elastic.multiprocessing.errors import record

from hw1lib import distributed
from hw1lib.config import get_config, recipe_record, without_seed
from hw1lib.data import prepare_data_root
from hw1lib.experiments import get_experiment
from hw1lib.runs import default_out_root


def train_experiment(
    experiment: str,
    profile: str = "demo",
    data: str = "",
    out_dir: str = "",
    device: str = "auto",
    *,
    seed: int = 0,
    fast_dev_run: bool = False,
    overrides: dict | None = None,
    data_seed: int = 0,
    label: str | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train ``experiment`` (or reuse its finished run) exactly as its notebook would, on one or several processes.

    Args:
        experiment: a registered experiment (:mod:`hw1lib.experiments`), e.g. ``p1_model_a``.
        profile: ``smoke``, ``demo`` or ``full``.
        data: the real data root, or ``""`` for the profile's generated stand-in.
        out_dir: the folder of run folders, or ``""`` for the notebooks' default (``runs/<profile>``, or
            ``runs/<profile>-fastdev`` for a fast dev run).
        device: ``auto``, ``cpu``, ``cuda`` (``cuda:LOCAL_RANK`` under torchrun) or ``cuda:N``.
        seed: the run's training seed (the notebooks' ``seed`` parameter).
        fast_dev_run: cap epochs and batches (:data:`hw1lib.config.FAST_DEV_RUN`).
        overrides: recipe fields to change (``{"lr": 1e-3, "augment.flip": False}``; the notebooks'
            ``overrides``): a new run folder, named by the changed configuration.
        data_seed: the stand-in's content seed (the notebooks' ``data_seed``); ignored for real data.
        label: a short name recorded in ``params.json`` (``hw1 train --name``), not part of the run's name.
        on_epoch_end: :func:`hw1lib.fit.fit`'s per-epoch callback, on every process (the tests' driver
            ``tests/_die_at_epoch.py`` kills a rank with it).

    Returns:
        :func:`hw1lib.fit.fit`'s result (rank 0's on every rank).

    Raises:
        ValueError: an unknown experiment, profile or override, an unusable device, or a batch size the
            processes cannot share evenly.
    """
    spec = get_experiment(experiment)
    config = get_config(experiment, profile, fast_dev_run=fast_dev_run, **{**without_seed(overrides), "seed": seed})
    from hw1lib.fit import fit  # after the argument checks: importing the models takes a while

    joined = not distributed.is_distributed()  # leave at the end only a process group this call joined
    try:
        resolved = distributed.setup(device)
        distributed.check_batch_size(config.batch_size)  # before loading anything
        train, val = _load(spec.loader, data, profile, data_seed, fast_dev_run)
        out_root = default_out_root(out_dir, profile, fast_dev_run)
        if distributed.is_main():
            group = distributed.backend() or "no process group"
            distributed.log(
                f"{experiment} ({profile}) on {distributed.world_size()} process(es), {group}, "
                f"device {resolved}: run folders in {out_root}"
            )
        result = fit(
            config,
            train,
            val,
            out_root,
            experiment,
            device=str(resolved),
            progress=distributed.is_main(),
            on_epoch_end=on_epoch_end,
            recipe=recipe_record(experiment, profile, config, fast_dev_run, label),
        )
    except BaseException as error:
        # no clean-up here: leaving a group whose peer died can block; the process exits and torchrun stops the rest
        if distributed.launched_world_size() > 1:  # the CLI's own error line does not say which process failed
            distributed.log(f"failed: {type(error).__name__}: {error}")
        raise
    if joined:
        distributed.cleanup()
    return result


#: the command's entry point: under torchrun, a failure's traceback goes into torchrun's failure summary
train_command = record(train_experiment)


def summary(result: dict) -> str:
    """One line about a finished (or reused) run, for the command's output."""
    metric = result["metric"]
    action = "reused" if result["reused"] else "trained"
    if result.get("resumed_from_epoch"):  # an interrupted run continued: say from where
        action = f"resumed from epoch {result['resumed_from_epoch']} of {result['epochs_planned']} and trained"
    return (
        f"{action} {result['run_dir']}: best val {metric} {result[f'best_val_{metric}']:.4f} at epoch "
        f"{result['best_epoch']} of {result['final_epoch']}; {result['stop_reason']}"
    )


def _load(loader, data: str, profile: str, data_seed: int, fast_dev_run: bool = False):
    """The problem's data, rank 0 first: it generates a missing stand-in and fills the decode cache, which the
    other ranks then read (each rank holds the whole data set on its device)."""
    if distributed.is_main():
        loaded = loader(prepare_data_root(data, profile, data_seed, fast_dev_run=fast_dev_run))
    distributed.barrier()
    if not distributed.is_main():
        loaded = loader(prepare_data_root(data, profile, data_seed, fast_dev_run=fast_dev_run))
    return loaded
