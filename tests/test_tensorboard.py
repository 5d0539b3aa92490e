"""Live curves: every trained run folder holds TensorBoard events whose scalars are history.csv's, step by step."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hw1lib.engine import epoch_batches
from hw1lib.fit import fit
from hw1lib.runs import RunFolder
from tests.test_engine import Interrupt, config, tiny_classification


def tiny(n: int, seed: int, key: str) -> SimpleNamespace:
    return tiny_classification(n, seed=seed, key=key)


#: the engine tests' tiny classifier, trained plainly (cross-entropy, no augmentation, no extra snapshots)
CONFIG = config(loss="ce", augment={}, snapshot_epochs=[], seed=1)


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the run's event files as ``[(step, value), ...]`` (purged steps already dropped)."""
    events = EventAccumulator(str(RunFolder(run_dir).tensorboard_dir()), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_events_match_history(run_dir, n: int) -> None:
    """The run's events against its history.csv (``n`` training samples, :data:`CONFIG`'s batches)."""
    sizes = [len(batch) for batch in epoch_batches(n, CONFIG.batch_size)]
    steps = len(sizes)
    history = pd.read_csv(RunFolder(run_dir).file("history"))
    logged = scalars(run_dir)
    epochs = history["epoch"].tolist()
    for column in history.columns.drop("epoch"):
        assert [s for s, _ in logged[f"epoch/{column}"]] == [e * steps for e in epochs], column
        assert [v for _, v in logged[f"epoch/{column}"]] == pytest.approx(history[column].tolist(), rel=1e-6), column
    step_losses = logged["step/train_loss"]
    assert [s for s, _ in step_losses] == list(range(1, epochs[-1] * steps + 1))  # every step once, in order
    for epoch, loss in zip(epochs, history["train_loss"]):  # the per-step losses average to the epoch's loss
        of_epoch = [v for s, v in step_losses if (epoch - 1) * steps < s <= epoch * steps]
        assert sum(v * size for v, size in zip(of_epoch, sizes)) / n == pytest.approx(loss, rel=1e-5)


def test_a_training_writes_events_that_match_history_csv(tmp_path):
    train, val = tiny(60, 0, "t"), tiny(30, 1, "v")
    result = fit(CONFIG, train, val, tmp_path, "p1_tb", device="cpu", progress=False)
    assert list(RunFolder(result["run_dir"]).tensorboard_dir().glob("events.out.tfevents.*"))
    assert_events_match_history(result["run_dir"], 60)
    reused = fit(CONFIG, train, val, tmp_path, "p1_tb", device="cpu", progress=False)
    assert reused["reused"]  # a reused run writes nothing more
    assert len(list(RunFolder(result["run_dir"]).tensorboard_dir().iterdir())) == 1


def interrupted_after(last: int, out_root):
    """Train :data:`CONFIG` into ``out_root`` and stop it after epoch ``last``; return its data for the rerun."""
    train, val = tiny(60, 0, "t"), tiny(30, 1, "v")

    def stop(epoch, row):
        if epoch == last:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(CONFIG, train, val, out_root, "p1_tb", device="cpu", progress=False, on_epoch_end=stop)
    # TensorBoard reads a folder's event files in name order, and a name starts with the second it was created,
    # then the process and a per-process counter: a rerun in the same second and process (only a test is that
    # quick) could sort before the first file once the counter passes 9. A real rerun comes seconds later.
    time.sleep(1.1)
    return train, val


def test_a_run_trained_again_from_epoch_one_shows_each_step_once(tmp_path):
    """Interrupted after epoch 2, then its last.pt found unreadable: the rerun trains epochs 1-3 again, and the
    events of the first attempt are purged (SummaryWriter's purge_step), so TensorBoard shows each step once."""
    train, val = interrupted_after(2, tmp_path)
    folder = RunFolder(next(tmp_path.glob("p1_tb-*")))
    assert len(scalars(folder.path)["epoch/train_loss"]) == 2
    folder.file("last").write_bytes(b"cut short")
    result = fit(CONFIG, train, val, tmp_path, "p1_tb", device="cpu", progress=False)
    assert "started this run over from epoch 1" in result["notes"][0]
    assert_events_match_history(folder.path, 60)


def test_a_resumed_run_continues_the_curves_without_duplicates(tmp_path):
    train, val = interrupted_after(1, tmp_path)
    result = fit(CONFIG, train, val, tmp_path, "p1_tb", device="cpu", progress=False)
    assert len(list(RunFolder(result["run_dir"]).tensorboard_dir().glob("events.out.tfevents.*"))) == 2
    assert_events_match_history(result["run_dir"], 60)
