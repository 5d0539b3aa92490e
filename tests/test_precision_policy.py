"""One precision policy by compute capability (training, validation, the grader), and the fp16 loss scaler.

There is no GPU here: the capability is mocked. The fp16 path runs for real on the CPU (CPU autocast takes fp16 and
``torch.amp.GradScaler("cpu")`` scales), so the scaler's code path in ``train_step`` and its state in ``last.pt``
are exercised end to end.
"""

from __future__ import annotations

import pytest
import torch

import hw1lib.engine as engine
import hw1lib.fit as fit_module
from hw1lib import precision
from hw1lib.fit import fit
from hw1lib.report.tables import _precision_text
from tests.test_engine import assert_same_weights, config, tiny_classification


@pytest.mark.parametrize(
    "capability, expected",
    [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((8, 6), "bf16"), ((9, 0), "bf16"), ((6, 1), "fp32")],
    ids=["V100 sm_70", "T4/2080Ti sm_75", "A100 sm_80", "sm_86", "H100 sm_90", "P100 sm_61"],
)
def test_precision_follows_the_compute_capability_of_the_runs_device(monkeypatch, capability, expected):
    asked = []

    def capability_of(device=None):
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability_of)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what emulation answers on sm_75
    device = torch.device("cuda:1")
    assert precision.resolve_precision(config(), device) == expected
    assert precision.resolve_precision(None, device) == expected  # the grader's commands: no recipe
    assert asked == [device, device]  # the run's device, not the current one


def test_an_unreadable_capability_means_fp32(monkeypatch):
    def broken(device=None):
        raise RuntimeError("no CUDA driver")

    monkeypatch.setattr(torch.cuda, "get_device_capability", broken)
    assert precision.resolve_precision(config(), torch.device("cuda")) == "fp32"


def test_cpu_precision_is_unchanged():
    # the resolved precision is hashed into run names: the CPU's answers must stay what they were
    assert precision.resolve_precision(config(), torch.device("cpu")) == "fp32"
    assert precision.resolve_precision(None, torch.device("cpu")) == "fp32"


def test_autocast_and_scaler_per_precision():
    cpu = torch.device("cpu")
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        with precision.autocast(cpu, name):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == dtype
    with precision.autocast(cpu, "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    assert precision.grad_scaler(cpu, "fp16").is_enabled()
    assert not precision.grad_scaler(cpu, "bf16").is_enabled() and not precision.grad_scaler(cpu, "fp32").is_enabled()


def test_report_names_each_precision():
    assert _precision_text("fp16") == "fp16 autocast with loss scaling (mixed precision), channels_last"
    assert _precision_text("bf16") == "bf16 autocast (mixed precision), channels_last"
    assert _precision_text("fp32") == "fp32, channels_last"


def test_train_step_scales_the_fp16_loss(monkeypatch):
    torch.manual_seed(0)
    training = engine.build_training(config(), torch.device("cpu"), 32)
    scaler = training.scaler = precision.grad_scaler(torch.device("cpu"), "fp16")
    training.precision, model = "fp16", training.model
    scaled = []
    real_scale = scaler.scale
    monkeypatch.setattr(scaler, "scale", lambda loss: scaled.append(loss.dtype) or real_scale(loss))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 5
    outputs, loss = engine.train_step(model, training, x, y)
    assert scaled == [torch.float32] and outputs.dtype == torch.float16  # fp16 autocast, fp32 loss, scaled
    assert torch.isfinite(loss) and scaler.get_scale() == 2.0**16  # no overflow: the scale is kept
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the scaler stepped


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # the skipped step: as AMP does
def test_an_overflowing_fp16_step_is_skipped_and_the_scale_halved():
    torch.manual_seed(0)
    training = engine.build_training(config(), torch.device("cpu"), 32)
    scaler = training.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # the fp16 gradients overflow to inf
    training.precision, model = "fp16", training.model
    before = [p.detach().clone() for p in model.parameters()]
    engine.train_step(model, training, torch.rand(8, 3, 32, 32), torch.arange(8) % 5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert scaler.get_scale() == 2.0**99


def test_fp16_resume_restores_the_scaler_and_is_exact(tmp_path, monkeypatch):
    # force the sm_75 policy on the CPU: fp16 autocast and an enabled GradScaler, through fit
    for module in (engine, fit_module):
        monkeypatch.setattr(module, "resolve_precision", lambda config, device: "fp16")
    monkeypatch.setattr(engine, "grad_scaler", lambda device, name: torch.amp.GradScaler("cpu", init_scale=256.0))
    train, val = tiny_classification(), tiny_classification(seed=1, key="v")
    reference = fit(config(), train, val, tmp_path / "a", "p1_test", device="cpu", progress=False)

    class Interrupt(Exception):
        pass

    def stop_after_two(epoch, row):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(config(), train, val, tmp_path / "b", "p1_test", device="cpu", progress=False, on_epoch_end=stop_after_two)
    saved = torch.load(next((tmp_path / "b").glob("p1_test-*/last.pt")), weights_only=False)
    assert saved["epoch"] == 2 and saved["scaler"]["scale"] == 256.0
    restored = []
    real_restore = fit_module._restore

    def spy(checkpoint, folder, training):
        result = real_restore(checkpoint, folder, training)
        restored.append(training.scaler.state_dict())
        return result

    monkeypatch.setattr(fit_module, "_restore", spy)
    resumed = fit(config(), train, val, tmp_path / "b", "p1_test", device="cpu", progress=False)
    assert (
        restored
        and restored[0]["scale"] == 256.0
        and restored[0]["_growth_tracker"] == saved["scaler"]["_growth_tracker"]
    )
    a = torch.load(f"{reference['run_dir']}/last.pt", weights_only=False)
    b = torch.load(f"{resumed['run_dir']}/last.pt", weights_only=False)
    assert_same_weights(a["model"], b["model"])
    assert a["scaler"] == b["scaler"]


# ---- the small ones: cuda:N under torchrun, cudnn.benchmark's scope, last.pt's cadence ----------------------------


def test_cuda_n_under_torchrun_is_this_ranks_gpu_or_refused(monkeypatch):
    from hw1lib import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "resolve_device", lambda name: torch.device(name))
    assert distributed.local_device(torch.device("cuda")) == torch.device("cuda:1")
    assert distributed.local_device(torch.device("cuda:1")) == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"would put every rank on GPU 0; use --device cuda .*cuda:1"):
        distributed.local_device(torch.device("cuda:0"))
    assert distributed.local_device(torch.device("cpu")) == torch.device("cpu")


def testcudnn_benchmark_is_on_while_training_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with pytest.raises(KeyboardInterrupt):
        with fit_module.cudnn_benchmark(torch.device("cuda")):
            assert torch.backends.cudnn.benchmark is True
            raise KeyboardInterrupt
    assert torch.backends.cudnn.benchmark is False
    with fit_module.cudnn_benchmark(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark is False


def test_last_pt_is_written_every_epoch_while_cheap_and_spaced_when_not(monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr(fit_module.time, "perf_counter", lambda: clock["now"])
    assert fit_module._save_last_now({"seconds": 0.3, "at": 99.9})  # cheap: every epoch
    slow = {"seconds": 4.0, "at": 100.0}  # FCN32s's 1.6 GB: about 4 s here
    clock["now"] = 130.0
    assert not fit_module._save_last_now(slow)  # 30 s of training since: the write would cost 13%
    clock["now"] = 140.0
    assert fit_module._save_last_now(slow)  # 10x the write's time: at most 10%
