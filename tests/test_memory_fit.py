"""Fitting the card: the CPU estimate of a recipe's training memory, the micro-batches and data placement ``fit``
chooses from the free memory (``torch.cuda.mem_get_info`` mocked: there is no GPU here), and gradient
accumulation keeping the global batch."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import hw1lib.fit as fit_module
from hw1lib import memory
from hw1lib.config import get_config
from hw1lib.fit import fit
from hw1lib.tasks import ClassificationTask
from tests.test_engine import config as tiny_config
from tests.test_engine import tiny_classification

GIB = 2**30


def full_data(task: str) -> list[torch.Tensor]:
    """The homework's full training set as meta tensors (sizes only)."""
    from benchmarks.memory_estimate import training_data

    return training_data(task)


def mock_free(monkeypatch, gib: float) -> list:
    asked = []

    def mem_get_info(device=None):
        asked.append(device)
        return int(gib * GIB), int(gib * GIB)

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    return asked


def test_the_estimate_grows_with_the_batch_and_halves_in_16_bits():
    config = get_config("p2_model_b", "full")
    fp32 = memory.estimate_training_memory(config, "fp32", (3, 512, 512))
    bf16 = memory.estimate_training_memory(config, "bf16", (3, 512, 512))
    assert fp32.parameters == bf16.parameters > 40e6  # DeepLabV3-ResNet50 with its aux head
    assert fp32.peak_bytes(8) > fp32.peak_bytes(4) > fp32.peak_bytes(2)
    assert 0.45 < bf16.saved_per_sample / fp32.saved_per_sample < 0.6  # 16-bit activations (BN/loss stay fp32)
    assert 9 * GIB < fp32.peak_bytes(8) < 13 * GIB and 5 * GIB < bf16.peak_bytes(8) < 8 * GIB


def test_the_training_input_is_the_augmentations_output_size():
    demo = get_config("p2_model_b", "demo")  # crops resized to augment["out_size"]
    side = demo.augment["out_size"]
    assert side != 512 and memory.train_input_shape(demo, (3, 512, 512)) == (3, side, side)
    assert memory.train_input_shape(get_config("p2_model_b", "full"), (3, 512, 512)) == (3, 512, 512)


@pytest.mark.parametrize("experiment", ["p1_model_b", "p2_model_b", "p2_model_a"])
def test_an_80_gb_card_runs_every_full_recipe_as_is_with_the_data_on_it(monkeypatch, experiment):
    asked = mock_free(monkeypatch, 79)
    config = get_config(experiment, "full")
    device = torch.device("cuda:1")
    plan = memory.plan_for_device(config, "bf16", device, full_data(config.task))
    assert asked == [device]  # the run's device's free memory
    assert plan.accumulation_steps == 1 and plan.micro_batch == config.batch_size and plan.data_on_device and plan.fits


def test_an_11_gb_card_keeps_efficientnet_v2_s_global_batch_by_accumulation(monkeypatch):
    mock_free(monkeypatch, 11 - 0.6)  # a 2080 Ti with a CUDA context
    config = get_config("p1_model_b", "full")
    plan = memory.plan_for_device(config, "fp16", torch.device("cuda"), full_data(config.task))
    assert plan.accumulation_steps == 2 and plan.micro_batch * plan.accumulation_steps == config.batch_size
    assert plan.peak_bytes <= memory.USABLE_FRACTION * plan.free_bytes and plan.data_on_device  # 69 MB of images
    fp32 = memory.plan_for_device(config, "fp32", torch.device("cuda"), full_data(config.task))
    assert fp32.accumulation_steps == 3 and fp32.micro_batch == 43  # chunks of 43, 43, 42: still 128 a step


def test_data_stays_in_host_memory_when_it_does_not_fit_beside_the_model(monkeypatch):
    config = get_config("p2_model_a", "full")  # FCN32s: ~5.6 GiB in 16 bits, 1.95 GiB of images and masks
    data = full_data(config.task)
    mock_free(monkeypatch, 7)
    tight = memory.plan_for_device(config, "fp16", torch.device("cuda"), data)
    assert tight.accumulation_steps == 1 and not tight.data_on_device  # the batch first, the data on the host
    mock_free(monkeypatch, 11 - 0.6)
    assert memory.plan_for_device(config, "fp16", torch.device("cuda"), data).data_on_device


def test_a_recipe_that_cannot_fit_says_so_and_a_set_accumulation_is_kept():
    estimate = memory.TrainingMemory(10_000_000, 0.0, 2 * GIB, 0.1 * GIB)
    hopeless = memory.plan_training(estimate, 64, 3 * GIB, 0)
    assert not hopeless.fits and hopeless.micro_batch == 2
    kept = memory.plan_training(estimate, 64, 80 * GIB, 0, accumulation_steps=4)
    assert kept.accumulation_steps == 4 and kept.micro_batch == 16


def test_a_failing_estimate_trains_as_the_recipe_says(monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("fake mode unsupported")

    monkeypatch.setattr(memory, "estimate_training_memory", broken)
    mock_free(monkeypatch, 10)
    config = get_config("p2_model_b", "full")
    plan = memory.plan_for_device(config, "bf16", torch.device("cuda"), full_data(config.task))
    assert plan.accumulation_steps == 1 and plan.micro_batch == 8 and plan.data_on_device  # 1.95 GiB < 2.5 GiB
    assert "no memory estimate for deeplabv3_resnet50" in capsys.readouterr().out


def test_no_plan_on_the_cpu():
    assert memory.plan_for_device(tiny_config(), "fp32", torch.device("cpu"), [torch.zeros(4, 3, 32, 32)]) is None


def test_fit_records_the_accumulation_in_the_runs_config_and_name(tmp_path, monkeypatch):
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    plain = fit(tiny_config(epochs=1), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    plan = memory.MemoryPlan(2, 8, 1.0, 0, True, 10 * GIB, True)
    monkeypatch.setattr(fit_module, "plan_for_device", lambda *a, **k: plan)
    split = fit(tiny_config(epochs=1), train, val, tmp_path, "p1_test", device="cpu", progress=False)
    assert split["run_dir"] != plain["run_dir"]  # a different computation (batch norm over micro-batches)
    params = json.loads((tmp_path / split["run_dir"].split("/")[-1] / "params.json").read_text())
    assert params["config"]["accumulation_steps"] == 2 and params["config"]["batch_size"] == 16
    plain_params = json.loads((tmp_path / plain["run_dir"].split("/")[-1] / "params.json").read_text())
    assert "accumulation_steps" not in plain_params["config"]  # runs without it keep their names


def test_accumulated_micro_batches_give_the_batchs_gradient():
    torch.manual_seed(0)
    x, y = torch.randn(12, 6), torch.arange(12) % 3
    results = []
    for steps in (1, 3):
        torch.manual_seed(1)
        model = nn.Linear(6, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        from hw1lib.engine import Training, train_step

        training = Training(model, ClassificationTask(), optimizer, scheduler, torch.device("cpu"))
        outputs, loss = train_step(model, training, x, y, steps)
        results.append((model.weight.detach().clone(), loss.detach(), outputs.shape))
    (w1, l1, s1), (w3, l3, s3) = results
    assert torch.allclose(w1, w3, atol=1e-6) and torch.allclose(l1, l3, atol=1e-6) and s1 == s3 == (12, 3)


def test_micro_batches_chosen_for_a_card_are_no_override_and_the_recipes_run_is_still_found(tmp_path):
    """An 11 GB card trains the recipe as 2 micro-batches: the grader and the notebooks still see the recipe."""
    import dataclasses

    from hw1lib.config import get_config, recipe_diff
    from hw1lib.runs import RunFolder, find_run

    recipe = get_config("p1_model_b", "full")
    on_small_card = dataclasses.replace(recipe, accumulation_steps=2)
    assert recipe_diff("p1_model_b", "full", on_small_card.to_dict()) == {}
    folder = RunFolder.for_params(tmp_path, "p1_model_b", {"config": on_small_card.to_dict()})
    folder.start({"name": "p1_model_b", "config": on_small_card.to_dict()})
    folder.write_history([{"epoch": 1, "val_acc": 0.5}])
    folder.write_metrics({"task": "classification", "metric": "acc", "best_val_acc": 0.5})
    assert find_run(tmp_path, "p1_model_b", recipe.to_dict()).run_dir == folder.path
