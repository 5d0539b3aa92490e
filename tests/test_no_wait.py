"""No host data inside a training step (so no host-to-device copy and no wait on a GPU), and the model changes
that make it so (normalisation buffers, no auxiliary head at inference) keep checkpoints loading.

How this can fail on a CPU-only machine: the step runs with the model, the data, the staged indices and the
augmentation values on the ``meta`` device (shapes without data: nothing is computed), under a dispatch mode
that records every operator touching a CPU tensor of one or more dimensions and every tensor made from Python
data (``lift_fresh``). On a GPU each of those would be a host-to-device copy inside the step: a CPU index into
GPU data, augmentation values drawn on the CPU, ``v2.Normalize``'s mean and std built from Python lists. The
AdamW step counter (a CPU scalar by PyTorch's design, no copy) is a 0-dimensional tensor and allowed. A tensor
made from Python data directly on the device (``torch.tensor(values, device=...)``) is built in C++ where no
dispatch mode sees it, so ``torch.tensor``-like calls are also watched at the Python level.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import hw1lib.engine as engine
from hw1lib.config import get_config
from hw1lib.models import build_model
from hw1lib.tasks import build_task
from tests.test_engine import config as tiny_config

META = torch.device("meta")
HOST_DATA = {torch.ops.aten.lift_fresh.default, torch.ops.aten.lift_fresh_copy.default}


#: torch functions that make a tensor from their first argument: host data unless that is a tensor already
FROM_DATA = (torch.tensor, torch.as_tensor, torch.asarray, torch.from_numpy, torch.Tensor.new_tensor)


class _CpuOperands(TorchDispatchMode):
    """Records operators that read or make a CPU tensor of one or more dimensions, or lift Python data."""

    def __init__(self, found: list[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in HOST_DATA:
            self.found.append(f"{func}: a tensor made from Python data")
        tensors = [t for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        if any(t.device.type == "cpu" and t.dim() > 0 for t in tensors):
            self.found.append(f"{func}: a CPU tensor of shape {[tuple(t.shape) for t in tensors if t.is_cpu]}")
        return out


class _FromData(TorchFunctionMode):
    """Records ``torch.tensor(data, device=...)`` and the like: made in C++ from Python data, such a tensor never
    reaches a dispatch mode as a CPU tensor, but on a GPU it is a host-to-device copy."""

    def __init__(self, found: list[str]) -> None:
        super().__init__()
        self.found = found

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in FROM_DATA:
            data = args[1] if func is torch.Tensor.new_tensor else (args[0] if args else None)
            if not isinstance(data, torch.Tensor):
                self.found.append(f"{func.__name__}: a tensor made from {type(data).__name__}")
        return func(*args, **(kwargs or {}))


class HostData:
    """Both detectors: ``with HostData() as detector: ...`` then ``detector.found`` lists every host read."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.modes = (_FromData(self.found), _CpuOperands(self.found))

    def __enter__(self) -> HostData:
        for mode in self.modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self.modes):
            mode.__exit__(*exc)


def meta_training(config, n: int, side: int, targets: torch.Tensor):
    """Model, task, optimizer and data of ``config`` on the meta device, with one step already taken (the
    optimizer's state is created once per run, on its first step, and is not a per-step cost)."""
    training = engine.build_training(config, META, n)
    images = torch.empty(n, 3, side, side, dtype=torch.uint8, device=META)
    targets = targets.to(META)
    plan = engine.stage_epoch(training.task, n, config, torch.Generator().manual_seed(0), META, META)
    engine._train_batch(training.model, training, (images, targets, plan.indices[0], plan.augment[0]), config)
    return training, images, targets, plan


@pytest.mark.parametrize("problem", ["classification", "segmentation"])
def test_a_training_step_reads_no_host_data(problem):
    if problem == "classification":
        config = tiny_config()
        n, side, targets = 32, 32, torch.zeros(32, dtype=torch.long)
    else:
        config = dataclasses.replace(
            get_config("p2_model_b", "demo"), model="deeplabv3_lite0", model_kwargs={}, pretrained=False, batch_size=4
        )
        n, side, targets = 8, 64, torch.zeros(8, 64, 64, dtype=torch.uint8)
    training, images, targets, plan = meta_training(config, n, side, targets)
    assert plan.augment[1] and all(v.device == META for v in plan.augment[1].values())  # staged on the device
    with HostData() as detector:
        outputs, loss, _ = engine._train_batch(
            training.model, training, (images, targets, plan.indices[1], plan.augment[1]), config
        )
    assert loss.device == META
    assert detector.found == []


def test_a_training_step_with_accumulation_reads_no_host_data():
    config = tiny_config(accumulation_steps=2)
    training, images, targets, plan = meta_training(config, 32, 32, torch.zeros(32, dtype=torch.long))
    with HostData() as detector:
        engine._train_batch(training.model, training, (images, targets, plan.indices[1], plan.augment[1]), config)
    assert detector.found == []


def test_the_detector_sees_what_the_old_step_did():
    from torchvision.transforms import v2  # after hw1lib (its _compat makes torchvision importable here)

    # the three host reads the staged step removed: a CPU index, CPU-drawn augmentation, v2.Normalize's lists
    images = torch.empty(8, 3, 32, 32, device=META)
    task = build_task(tiny_config())
    for old in (
        lambda: images[torch.arange(4)],
        lambda: task.augment(images, torch.zeros(8, device=META), torch.Generator().manual_seed(0)),
        lambda: v2.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])(images),
    ):
        with HostData() as detector:
            old()
        assert detector.found


@pytest.mark.parametrize("name", ["vgg_like", "efficientnet_lite0", "deeplabv3_lite0", "fcn32s"])
def test_inference_reads_no_host_data(name):
    model = build_model(name).eval().to(META)
    with HostData() as detector, torch.no_grad():
        model(torch.empty(2, 3, 64, 64, device=META))
    assert detector.found == []


@pytest.mark.parametrize("name", ["vgg_like", "efficientnet_lite0", "deeplabv3_lite0"])
def test_normalisation_buffers_keep_the_state_dict_and_the_outputs(name):
    from torchvision.transforms import v2

    torch.manual_seed(0)
    model = build_model(name).eval()
    keys = set(model.state_dict())
    assert not any(k.startswith("normalize.") for k in keys)  # non-persistent: not in checkpoints
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        new = model(x)
        # the model as earlier checkpoints were made: torchvision's v2.Normalize, which holds no state
        mean, std = model.normalize.mean.flatten().tolist(), model.normalize.std.flatten().tolist()
        model.normalize = v2.Normalize(mean, std)
        old_state = model.state_dict()
        old = model(x)
    assert set(old_state) == keys
    fresh = build_model(name).eval()
    fresh.load_state_dict(old_state, strict=True)  # an old checkpoint loads into the new model
    with torch.no_grad():
        reloaded = fresh(x)
    for a, b, c in zip(tree_leaves(new), tree_leaves(old), tree_leaves(reloaded)):
        assert torch.equal(a, b) and torch.equal(a, c)  # bitwise: same arithmetic


def test_no_aux_head_at_inference_and_the_same_out():
    torch.manual_seed(0)
    model = build_model("deeplabv3_lite0")
    assert any(k.startswith("model.aux_classifier.") for k in model.state_dict())  # torchvision's structure kept
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    calls = []
    model.model.aux_classifier.register_forward_hook(lambda *a: calls.append(1))
    with torch.inference_mode():  # the grader's commands
        out = model(x)
    assert set(out) == {"out"} and calls == []
    with torch.no_grad():  # validation and the architecture figure: torchvision's output, aux included
        reference = model(x)
    assert set(reference) == {"out", "aux"} and calls == [1]
    assert torch.equal(out["out"], reference["out"])
    model.train()
    with torch.no_grad():
        assert set(model(x)) == {"out", "aux"}


def test_validation_loss_keeps_the_aux_term_as_training_has_it():
    config = dataclasses.replace(
        get_config("p2_model_b", "smoke"), model="deeplabv3_lite0", model_kwargs={}, pretrained=False
    )
    training = engine.build_training(config, torch.device("cpu"), 4)
    model, task = training.model, training.task
    calls = []
    model.model.aux_classifier.register_forward_hook(lambda *a: calls.append(1))
    images, masks = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8), torch.zeros(4, 32, 32, dtype=torch.uint8)
    config = dataclasses.replace(config, eval_batch_size=2)
    engine.evaluate(model, task, engine.Data(images, masks), config, torch.device("cpu"))
    assert calls == [1, 1]  # one per validation batch: the loss is defined as in training and earlier histories


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_step_does_not_synchronise():
    device = torch.device("cuda")
    config = tiny_config()
    training = engine.build_training(config, device, 64)
    images = torch.randint(0, 255, (64, 3, 32, 32), dtype=torch.uint8, device=device)
    targets = torch.randint(0, 5, (64,), device=device)
    plan = engine.stage_epoch(training.task, 64, config, torch.Generator().manual_seed(0), device, device)
    engine._train_batch(training.model, training, (images, targets, plan.indices[0], plan.augment[0]), config)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        engine._train_batch(training.model, training, (images, targets, plan.indices[1], plan.augment[1]), config)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("problem", ["classification", "segmentation"])
def test_staging_draws_what_the_per_step_code_drew(problem):
    # the same generator gives the same permutation and the same augmentation, bitwise, as drawing batch by batch
    if problem == "classification":
        config = tiny_config(batch_size=8)
        images, targets = torch.rand(20, 3, 32, 32), torch.arange(20) % 5
    else:
        config = dataclasses.replace(get_config("p2_model_b", "smoke"), batch_size=4)
        images, targets = torch.rand(10, 3, 32, 32), torch.randint(0, 7, (10, 32, 32), dtype=torch.uint8)
    task = build_task(config)
    cpu = torch.device("cpu")
    plan = engine.stage_epoch(task, len(images), config, torch.Generator().manual_seed(5), cpu, cpu)
    generator = torch.Generator().manual_seed(5)
    batches = engine.epoch_batches(len(images), config.batch_size, generator, config.max_train_batches)
    assert len(batches) == len(plan.indices) > 1
    for index, staged_index, staged in zip(batches, plan.indices, plan.augment):
        assert torch.equal(index, staged_index)
        old = task.augment(images[index], targets[index], generator)  # drawn now, as the step used to
        new = task.apply_augment(images[staged_index], targets[staged_index], staged)
        assert all(torch.equal(a, b) for a, b in zip(old, new))
