"""The benchmark (``benchmarks/bench``): its small pure helpers, the conventional data path, and one ``--quick``
run end to end through ``python -m benchmarks.bench``."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.bench.__main__ import default_out, parse_args
from benchmarks.bench.__main__ import main as bench_main
from benchmarks.bench.conventional import ConventionalSegmentationSet
from benchmarks.bench.data_paths import images_per_pass
from benchmarks.bench.flops import count_flops
from benchmarks.bench.plan import (
    CHANNELS_LAST_BF16,
    CHANNELS_LAST_FP32,
    ENGINE,
    ENGINE_COMPILED,
    NCHW_FP32,
    Setting,
    bench_batch,
    make_plan,
)
from benchmarks.bench.run import apply_peaks
from benchmarks.bench.tables import markdown_table
from benchmarks.bench.timing import matmul_peak, time_interleaved
from hw1lib.config import TrainConfig, get_config
from hw1lib.data.palette import encode_mask
from hw1lib.models import list_models
from hw1lib.paths import REPO_ROOT
from hw1lib.precision import native_cpu_bf16
from hw1lib.tasks import build_task

#: a classification task with cross-entropy and no augmentation (the FLOP counts below are by hand)
PLAIN_CLASSIFIER = TrainConfig(task="classification", model="vgg_like", num_classes=50)


def test_bench_batch_caps_pixels_on_the_cpu_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    plan = make_plan(False, cpu)
    assert bench_batch(250, 32, cpu, plan) == 250  # 32 px: the recipe's batch fits
    assert bench_batch(128, 224, cpu, plan) == 524_288 // 224**2 == 10
    assert bench_batch(8, 512, cpu, plan) == 2  # never below 2 (BatchNorm)
    assert bench_batch(8, 512, cuda, make_plan(False, cuda)) == 8


def test_images_per_pass_counts_what_a_pass_trains_on():
    assert images_per_pass(2000, 250, None, drops_single=True) == 2000
    assert images_per_pass(501, 250, None, drops_single=True) == 500  # the engine drops a last batch of one
    assert images_per_pass(501, 250, None, drops_single=False) == 501  # a DataLoader keeps it
    assert images_per_pass(96, 8, 3, drops_single=True) == 24


def test_results_are_written_only_where_told():
    cpu = torch.device("cpu")
    assert default_out(cpu, quick=False) is None  # a full run without --out prints its tables only
    assert REPO_ROOT not in default_out(cpu, quick=True).parents


def test_time_interleaved_rotates_the_order_and_times_every_call():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = time_interleaved(fns, torch.device("cpu"), warmup=1, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, then rotating rounds
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_apply_peaks_keeps_the_best_sample_and_fills_fractions():
    results = {
        "environment": {"device": "cpu"},
        "models": [{"peak_used": "main", "train_achieved_tflops": 0.001, "infer_achieved_tflops": 0.002}],
        "levers": [{"peak_used": "cpu_bf16", "train_achieved_tflops": 0.004}, {"lever": "x", "error": "failed"}],
    }
    apply_peaks(results, [{"main": 2e9, "cpu_bf16": 8e9}, {"main": 4e9, "cpu_bf16": None}])
    assert results["peaks"]["main"] == 4e9 and results["peaks"]["cpu_bf16"] == 8e9
    assert results["models"][0]["train_fraction_of_peak"] == pytest.approx(0.25)  # 1 GFLOP/s of 4
    assert results["models"][0]["infer_fraction_of_peak"] == pytest.approx(0.5)
    assert results["levers"][0]["train_fraction_of_peak"] == pytest.approx(0.5)  # 4 GFLOP/s of the bf16 peak, 8
    assert "train_fraction_of_peak" not in results["levers"][1]


def test_matmul_peak_is_a_plausible_rate():
    peak = matmul_peak(torch.device("cpu"), size=128, repeats=3)
    assert peak is not None and 1e8 < peak < 1e14  # FLOP/s: above 0.1 GFLOP/s, below 100 TFLOP/s


def test_count_flops_of_a_linear_model_by_hand():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5, bias=False))
    task = build_task(PLAIN_CLASSIFIER)
    images, labels = torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 1])
    train, infer = count_flops(model, task, images, labels, torch.device("cpu"))
    forward = 2 * 48 * 5  # one (1 x 48) @ (48 x 5) product per image
    assert infer == forward
    assert train == 2 * forward  # + the weight gradient; the input needs none (its grad is not computed)


def test_count_flops_of_grouped_convolutions_by_hand():
    # torch 2.13's own formula counts a grouped convolution's backward `groups` times over; ours must not
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 5, bias=False),
    )
    task = build_task(PLAIN_CLASSIFIER)
    images, labels = torch.zeros(2, 3, 6, 6, dtype=torch.uint8), torch.tensor([0, 1])
    train, infer = count_flops(model, task, images, labels, torch.device("cpu"))
    dense, depthwise, linear = 2 * 36 * 8 * 3 * 9, 2 * 36 * 8 * 1 * 9, 2 * 288 * 5  # per image
    assert infer == dense + depthwise + linear
    # backward: the first conv needs only its weight gradient; the others need input and weight gradients
    assert train == (dense + depthwise + linear) + dense + 2 * depthwise + 2 * linear


def test_conventional_segmentation_set_transforms_image_and_mask_together(tmp_path):
    # the image's red channel is 40 x the mask's class, so flips and rotations must keep them aligned
    classes = np.random.default_rng(0).integers(0, 6, (32, 32)).astype(np.uint8)
    Image.fromarray(np.repeat(classes[..., None] * 40, 3, axis=2)).save(tmp_path / "0000_sat.png")
    (tmp_path / "0000_sat.png").rename(tmp_path / "0000_sat.jpg")  # lossless content; PIL reads by content
    Image.fromarray(encode_mask(classes)).save(tmp_path / "0000_mask.png")
    dataset = ConventionalSegmentationSet(tmp_path, out_size=32, scale=(1.0, 1.0))  # geometry only: exact
    torch.manual_seed(0)
    changed = 0
    for _ in range(8):
        image, mask = dataset[0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and mask.shape == (32, 32)
        assert torch.equal((image[0] * 255).round().long() // 40, mask.long())
        changed += not torch.equal(mask, torch.from_numpy(classes))
    assert changed > 0  # the transforms did move pixels


def test_settings_resolve_against_the_recipe_and_name_themselves():
    config = get_config("p1_model_a", "demo")
    assert ENGINE.resolve(config) == Setting(channels_last=True, cpu_bf16=True, compile=False)
    assert NCHW_FP32.resolve(config) == Setting(False, False, False)
    assert ENGINE_COMPILED.resolve(config).compile
    names = {s.name for s in (ENGINE, ENGINE_COMPILED, NCHW_FP32, CHANNELS_LAST_FP32, CHANNELS_LAST_BF16)}
    assert names == {
        "engine as is",
        "engine as is, torch.compile",
        "NCHW, fp32",
        "channels_last, fp32",
        "channels_last, bf16 autocast",
    }


def test_markdown_table_escapes_cell_separators():
    import pandas as pd

    table = markdown_table(pd.DataFrame([{"a": "x|y", "b": 1}]))
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]


def test_command_line_documents_that_a_full_run_without_out_writes_nothing(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--help"])
    assert exit_.value.code == 0 and "writes nothing" in " ".join(capsys.readouterr().out.split())


def test_python_m_benchmarks_bench_refuses_a_markdown_out():
    # through the module entry point, from the repository root (as `make bench` runs it)
    refused = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--out", "x.md"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "give a .json name" in refused.stderr


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    with pytest.MonkeyPatch.context() as patch:  # module-scoped, so set the cache variables here too
        patch.setenv("HW1_CACHE", str(out.parent / "cache"))
        threads = torch.get_num_threads()
        returned = bench_main(["--quick", "--device", "cpu", "--out", str(out)])
        assert torch.get_num_threads() == threads  # the quick plan's single thread is not left behind
    results = json.loads(out.read_text())
    assert results["models"] == json.loads(json.dumps(returned["models"], default=str))  # what main returns
    return results, out.with_suffix(".md").read_text()


@pytest.fixture(scope="module")
def quick_results(quick_run):
    return quick_run[0]


@pytest.mark.slow
def test_quick_run_has_a_positive_row_per_registered_model(quick_results):
    rows = {row["model"]: row for row in quick_results["models"]}
    assert sorted(rows) == list_models()
    for name, row in rows.items():
        for key in ("train_images_per_s", "infer_images_per_s", "train_gflop_per_image", "train_achieved_tflops"):
            assert row[key] > 0, (name, key, row[key])
        assert 0 < row["train_fraction_of_peak"] and math.isfinite(row["train_fraction_of_peak"])
        assert row["peak_memory_mib"] is None or row["peak_memory_mib"] >= 0


@pytest.mark.slow
def test_quick_run_compares_both_data_paths_with_ratios(quick_results):
    baseline = "p1_model_a, conventional loop in NCHW, fp32"  # the engine as it trains against the usual loop
    assert set(quick_results["data_paths"]) == {"p1_model_a", "p2_model_b", baseline}
    conventional, project = quick_results["data_paths"][baseline]["rows"]
    assert conventional["lever"] == "NCHW, fp32" and conventional["precision"] == "fp32"
    assert not conventional["channels_last"]
    assert project["lever"] == "engine as is" and project["channels_last"]
    same = quick_results["data_paths"]["p1_model_a"]["rows"]  # the same step on both sides
    assert same[0]["precision"] == same[1]["precision"] and same[0]["channels_last"] == same[1]["channels_last"]
    for comparison in quick_results["data_paths"].values():
        assert [r["pipeline"] for r in comparison["rows"]] == ["conventional", "project"]
        assert all(r["train_images_per_s"] > 0 and r["images_per_pass"] > 0 for r in comparison["rows"])
        assert comparison["ratios"]["train_speedup"] > 0 and comparison["ratios"]["data_only_speedup"] > 0
    p1 = quick_results["data_paths"]["p1_model_a"]["rows"]
    assert p1[0]["images_per_pass"] == p1[1]["images_per_pass"] == 400 and all(r["whole_epoch"] for r in p1)
    assert p1[1]["one_off"]["decode_seconds"] > 0  # counted apart from the epochs


@pytest.mark.slow
def test_quick_run_records_where_and_how_it_was_measured(quick_results):
    env = quick_results["environment"]
    assert env["device"] == "cpu" and env["command"].startswith("python -m benchmarks.bench --quick --device cpu")
    assert quick_results["peaks"]["main"] > 0
    levers = {row["lever"]: row for row in quick_results["levers"]}
    assert list(levers) == ["NCHW, fp32", "channels_last, bf16 autocast"]
    assert not levers["NCHW, fp32"]["engine"] and levers["NCHW, fp32"]["precision"] == "fp32"
    # the smoke recipe of model A asks for CPU bf16 (so this lever is the engine's); it computes in bf16 where
    # the CPU has AMX, else in fp32
    bf16 = levers["channels_last, bf16 autocast"]
    assert bf16["engine"] and bf16["precision"] == ("bf16" if native_cpu_bf16() else "fp32")


@pytest.mark.slow
def test_quick_run_writes_the_tables_as_markdown_beside_the_json(quick_run):
    results, markdown = quick_run
    assert markdown.startswith("# Benchmark results")
    assert "`python -m benchmarks.bench --quick --device cpu --out " in markdown
    for row in results["models"]:
        assert f"| {row['model']} | " in markdown
    assert markdown.count("project/conventional = ") == len(results["data_paths"])
