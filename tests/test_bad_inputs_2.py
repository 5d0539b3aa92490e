"""The second catalogue of bad inputs and faults (issue 20): special files, mount points, clashing names, masks
that are not colours, stale caches, two writers, interrupts, huge images, misleading messages.

Conventions as in ``test_bad_inputs.py`` (whose helpers this reuses): a user error ends in one line naming the
file and what was expected, exit status 2, no traceback, nothing half-written, no temporary or staging folder
left. Where a real fault is possible here (a tmpfs mount, a full tmpfs, a character device, a memory limit) the
test makes it for real and falls back to a simulation (said in its docstring) where the sandbox forbids it.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from hw1lib.checkpoints import model_meta
from hw1lib.config import TrainConfig
from hw1lib.data import load_classification_folder, load_segmentation_folder, prepare_data_root
from hw1lib.data.cache import cached_arrays
from hw1lib.data.palette import encode_mask
from hw1lib.files import atomic_write, save_torch
from hw1lib.fit import fit
from hw1lib.grading import STAGING, _starts, predict_mask
from hw1lib.interrupts import TrainingInterrupted
from hw1lib.locks import RunBusyError, run_lock
from hw1lib.models import build_model
from hw1lib.paths import REPO_ROOT
from tests._helpers import save_image
from tests.test_bad_inputs import checkpoint, masks, run_cli, snapshot


def child_env() -> dict[str, str]:
    """The environment of a child process: this test's (its temporary HW1_* folders), one thread, this checkout."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


def one_error_line(status: int, err: str, *words: str) -> None:
    """Exit 2, exactly one line, every expected word in it."""
    assert status == 2 and err.count("\n") == 1 and all(w in err for w in words), err


def hidden(folder: Path) -> list[str]:
    """Hidden entries (staging folders, temporary files) left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def _narrow_fcn(path: Path) -> Path:
    """The demo's FCN32s layout at 1/8 width: the same 32x downsampling, a fraction of the compute and memory."""
    kwargs = {"batch_norm": True, "width": 0.125, "fc_channels": 64}
    config = TrainConfig(task="segmentation", model="fcn32s", num_classes=7, model_kwargs=kwargs)
    torch.manual_seed(0)
    model = build_model("fcn32s", num_classes=7, **kwargs)
    save_torch({"model": model.state_dict(), "meta": model_meta(config, model), "epoch": 1}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {"cls": str(checkpoint(root / "cls.pt", "classification")), "seg": str(_narrow_fcn(root / "seg.pt"))}


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (a separate file system, as a container volume is) and unmount it afterwards;
    skip where mounting is not permitted (not root, no CAP_SYS_ADMIN)."""
    mounted = []

    def mount(name: str, size: str = "4m") -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def classify(p1, out, ckpt_path):
    return ["classify", str(p1), str(out), "--checkpoint", ckpt_path, "--device", "cpu"]


def segment(p2, out, ckpt_path):
    return ["segment", str(p2), str(out), "--checkpoint", ckpt_path, "--device", "cpu"]


# ---- outputs that are not regular files ------------------------------------------------------------


def test_classify_into_a_fifo_writes_through_and_leaves_a_fifo(tmp_path, p1_dir, ckpt, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    status, err = run_cli(classify(p1_dir, fifo, ckpt["cls"]), capsys)
    reader.join(30)
    assert status == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    lines = received[0].decode().splitlines()
    assert lines[0] == "filename,label" and [line.split(",")[0] for line in lines[1:]] == ["1.png", "2.png", "10.png"]
    assert hidden(tmp_path) == []


def test_classify_to_dev_stdout_prints_the_csv_and_leaves_dev_stdout_alone(p1_dir, ckpt):
    before = os.lstat("/dev/stdout")
    done = subprocess.run(
        [sys.executable, "-m", "hw1lib", *classify(p1_dir, "/dev/stdout", ckpt["cls"])],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "filename,label" and [line.split(",")[0] for line in lines[1:]] == ["1.png", "2.png", "10.png"]
    assert "wrote 3 rows to /dev/stdout" in done.stderr  # the summary line stays out of the CSV
    after = os.lstat("/dev/stdout")
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


def test_a_character_device_is_written_through_not_replaced(tmp_path):
    """A device node of our own (the null device's numbers, made in the temporary folder; /dev/null itself is
    never at risk here) receives the bytes and stays a character device."""
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError as error:
        pytest.skip(f"cannot make a device node here: {error}")
    atomic_write(node, lambda handle: handle.write(b"filename,label\n"))
    assert stat.S_ISCHR(os.lstat(node).st_mode) and hidden(tmp_path) == []


def test_a_symbolic_link_stays_a_link_and_its_file_is_replaced(tmp_path):
    target = tmp_path / "results" / "pred.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "pred.csv"
    link.symlink_to(target)
    atomic_write(link, lambda handle: handle.write(b"new\n"))
    assert link.is_symlink() and target.read_text() == "new\n" and hidden(target.parent) == []


def test_a_socket_as_output_is_refused_in_one_line(tmp_path, p1_dir, ckpt, capsys):
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        status, err = run_cli(classify(p1_dir, path, ckpt["cls"]), capsys)
    finally:
        server.close()
    one_error_line(status, err, "sock is a socket", "expected a regular file")
    assert stat.S_ISSOCK(os.lstat(path).st_mode) and hidden(tmp_path) == []


# ---- segment into a mount point; staging --------------------------------------------------------------


def test_segment_writes_into_a_mount_point(tmp_path, tmpfs, p2_dir, ckpt, capsys):
    """A real tmpfs mount: the old staging folder beside the output could not be renamed across it (EXDEV)."""
    volume = tmpfs("output")
    (volume / "0000.png").write_bytes(b"old")
    status, err = run_cli(segment(p2_dir, volume, ckpt["seg"]), capsys)
    assert status == 0, err
    assert sorted(p.name for p in volume.iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert Image.open(volume / "0000.png").size == (64, 64) and hidden(tmp_path) == []


def test_segment_never_renames_across_file_systems(tmp_path, p2_dir, ckpt, capsys, monkeypatch):
    """Simulation where mounting is not possible: every rename whose source lies outside the output folder
    fails with EXDEV, as it would from another file system."""
    out = tmp_path / "out"
    out.mkdir()
    real = os.replace

    def replace(src, dst):
        if Path(out) not in Path(src).parents:
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    status, err = run_cli(segment(p2_dir, out, ckpt["seg"]), capsys)
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["0000.png", "0001.png", "0002.png"]


def test_a_staging_folder_left_by_a_killed_run_is_removed(tmp_path, p2_dir, ckpt, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "masks"
    inside = out / f"{STAGING}{dead.pid}"
    beside = tmp_path / f".masks.tmp{dead.pid}"
    for folder in (inside, beside):
        folder.mkdir(parents=True)
        (folder / "0000.png").write_bytes(b"half")
    status, err = run_cli(segment(p2_dir, out, ckpt["seg"]), capsys)
    assert status == 0, err
    assert not inside.exists() and not beside.exists() and hidden(out) == [] and hidden(tmp_path) == []


@pytest.mark.parametrize("existing", [True, False])
def test_a_full_disk_while_writing_masks_leaves_the_output_as_it_was(
    existing, tmp_path, p2_dir, ckpt, capsys, monkeypatch
):
    """The third mask hits ENOSPC (simulated: filling a real disk would take seconds to minutes)."""
    out = tmp_path / ("masks" if existing else "new/masks")
    if existing:
        out.mkdir()
        (out / "0000.png").write_bytes(b"an earlier mask")
    before = snapshot(tmp_path / "masks")
    real, calls = Image.Image.save, []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    status, err = run_cli(segment(p2_dir, out, ckpt["seg"]), capsys)
    one_error_line(status, err, f"disk full while writing {out}")
    assert snapshot(tmp_path / "masks") == before and hidden(tmp_path) == []
    assert existing or not (tmp_path / "new").exists()  # the folders this run created are gone again


def test_a_full_disk_under_the_csv_says_so_and_names_the_file(tmp_path, tmpfs, p1_dir, ckpt, capsys):
    volume = tmpfs("small", "64k")
    filler = volume / "filler"
    with open(filler, "wb") as handle:
        try:
            handle.write(bytes(1 << 20))
        except OSError:
            pass
    out = volume / "pred.csv"
    status, err = run_cli(classify(p1_dir, out, ckpt["cls"]), capsys)
    one_error_line(status, err, f"disk full while writing {out}")
    assert sorted(p.name for p in volume.iterdir()) == ["filler"]


# ---- names that clash once the extension is set aside -------------------------------------------------


def test_segment_refuses_images_whose_names_clash(p2_dir, tmp_path, ckpt, capsys):
    save_image(p2_dir / "0001.jpeg", size=(64, 64))
    save_image(p2_dir / "0001.JPG", size=(64, 64))
    status, err = run_cli(segment(p2_dir, tmp_path / "out", ckpt["seg"]), capsys)
    one_error_line(status, err, "clashing file names", "0001.JPG, 0001.jpeg, 0001.jpg", "one file per name")
    assert not (tmp_path / "out").exists()


def test_classify_refuses_images_whose_names_clash(p1_dir, tmp_path, ckpt, capsys):
    save_image(p1_dir / "2.PNG")
    status, err = run_cli(classify(p1_dir, tmp_path / "a.csv", ckpt["cls"]), capsys)
    one_error_line(status, err, "clashing file names", "2.PNG, 2.png")


def test_training_loaders_refuse_names_that_clash(tmp_path):
    p2 = tmp_path / "train"
    p2.mkdir()
    for name in ("0001_sat.jpg", "0001_sat.JPG"):
        save_image(p2 / name, size=(16, 16))
    Image.fromarray(encode_mask(np.zeros((16, 16), np.uint8))).save(p2 / "0001_mask.png")
    with pytest.raises(ValueError, match=r"0001_sat.JPG, 0001_sat.jpg"):
        load_segmentation_folder(p2, cache=False)
    p1 = tmp_path / "train_50"
    p1.mkdir()
    for name in ("3_1.png", "3_1.PNG"):
        save_image(p1 / name)
    with pytest.raises(ValueError, match=r"3_1.PNG, 3_1.png"):
        load_classification_folder(p1, labelled=True, cache=False)


# ---- miou on masks that are not colours ---------------------------------------------------------------


@pytest.mark.parametrize("which, mode", [("pred", "L"), ("gt", "L"), ("pred", "I;16")])
def test_miou_refuses_single_channel_masks(which, mode, tmp_path, capsys):
    gt = masks(tmp_path / "gt", ["0000_mask.png"])
    pred = masks(tmp_path / "pred", ["0000.png"])
    target = (pred / "0000.png") if which == "pred" else (gt / "0000_mask.png")
    indices = np.full((2, 3), 5, dtype=np.uint8)  # class indices: a "perfect" answer scored 0 before
    Image.fromarray(indices if mode == "L" else indices.astype(np.uint16)).save(target)
    status, err = run_cli(["miou", str(gt), str(pred)], capsys)
    one_error_line(status, err, target.name, f"single-channel ({mode})", "expected an RGB mask in the palette")


def test_miou_reads_class_indices_only_when_asked(tmp_path, capsys):
    gt = masks(tmp_path / "gt", ["0000_mask.png"])  # all class 0 (urban) in colours
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(pred / "0000.png")  # a perfect answer as class indices
    status, out = main_out(["miou", str(gt), str(pred), "--class-indices"], capsys)
    assert status == 0 and "mean_iou: 1.000000" in out
    Image.fromarray(np.full((2, 3), 200, np.uint8)).save(pred / "0000.png")  # grey, not indices
    status, err = run_cli(["miou", str(gt), str(pred), "--class-indices"], capsys)
    one_error_line(status, err, "0000.png: class indices must lie in 0..6, found 200..200")


def main_out(args: list[str], capsys) -> tuple[int, str]:
    from hw1lib.cli import main

    status = main(args)
    return status, capsys.readouterr().out


def test_miou_still_reads_a_palette_png_of_the_right_colours(tmp_path, capsys):
    gt = masks(tmp_path / "gt", ["0000_mask.png"])
    pred = masks(tmp_path / "pred", ["0000.png"])
    Image.open(pred / "0000.png").convert("P").save(pred / "0000.png")  # mode P: colours through a palette
    status, _ = run_cli(["miou", str(gt), str(pred)], capsys)
    assert status == 0


# ---- the cache and the run's fingerprint follow the content ------------------------------------------


def _same_size_pngs(folder: Path, seed: int) -> None:
    """Two uncompressed 32x32 PNGs: same byte size for any pixels, so only the content tells them apart."""
    rng = np.random.default_rng(seed)
    for name in ("0_1.png", "1_2.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name, compress_level=0)


def test_content_changed_with_name_size_and_mtime_kept_is_decoded_again_and_trains_a_new_run(tmp_path):
    folder = tmp_path / "train_50"
    folder.mkdir()
    _same_size_pngs(folder, 0)
    stats = {p.name: os.stat(p) for p in folder.iterdir()}
    first = load_classification_folder(folder, labelled=True)
    again = load_classification_folder(folder, labelled=True)
    assert again.from_cache and again.key == first.key
    _same_size_pngs(folder, 1)  # new pixels; then size and modification time restored, as `cp -p` keeps them
    for path in folder.iterdir():
        os.utime(path, ns=(stats[path.name].st_atime_ns, stats[path.name].st_mtime_ns))
        assert path.stat().st_size == stats[path.name].st_size
    changed = load_classification_folder(folder, labelled=True)
    assert not changed.from_cache and changed.key != first.key
    assert not torch.equal(changed.images, first.images)
    config = TrainConfig(
        task="classification", model="vgg_like", num_classes=3, epochs=1, batch_size=2,
        model_kwargs={"widths": [4, 4, 8], "hidden": 8},
    )  # fmt: skip
    runs = tmp_path / "runs"
    old = fit(config, first, first, runs, "p1_content", device="cpu", progress=False)
    new = fit(config, changed, changed, runs, "p1_content", device="cpu", progress=False)
    assert not new["reused"] and new["run_dir"] != old["run_dir"]


def test_a_truncated_cache_file_is_named_and_decoded_again(tmp_path, capsys):
    root = tmp_path / "cache"
    arrays = {"images": np.arange(4000, dtype=np.uint8).reshape(10, 400)}
    cached_arrays(root, "k", lambda: arrays)
    npy = root / "k" / "images.npy"
    npy.write_bytes(npy.read_bytes()[:100])
    again, hit = cached_arrays(root, "k", lambda: arrays)
    err = capsys.readouterr().err
    assert not hit and np.array_equal(again["images"], arrays["images"])
    assert err.count("\n") == 1 and f"cache file {npy} cannot be read" in err and "decoding again" in err
    assert cached_arrays(root, "k", lambda: arrays)[1]  # rewritten: the next load is a hit


def test_a_full_disk_under_the_cache_names_the_entry_and_goes_on(tmp_path, tmpfs, capsys):
    root = tmpfs("cache", "64k")
    arrays = {"images": np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8)}  # 160 kB
    got, hit = cached_arrays(root, "k", lambda: arrays)
    err = capsys.readouterr().err
    assert not hit and got is arrays
    assert err.count("\n") == 1 and f"disk full while writing {root / 'k'}" in err
    assert list(root.iterdir()) == []  # no half-written entry


# ---- one writer per run folder ------------------------------------------------------------------------


def _tiny_data(key: str = "k"):
    torch.manual_seed(0)
    return SimpleNamespace(
        images=torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8), labels=torch.arange(8) % 2, key=key
    )


def _tiny_config(epochs: int = 1) -> TrainConfig:
    return TrainConfig(
        task="classification", model="vgg_like", num_classes=2, epochs=epochs, batch_size=4,
        model_kwargs={"widths": [4, 4, 8], "hidden": 8},
    )  # fmt: skip


def test_a_second_training_of_the_same_run_stops_naming_the_holder(tmp_path):
    data = _tiny_data()
    result = fit(_tiny_config(), data, data, tmp_path, "p1_lock", device="cpu", progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from hw1lib.locks import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", result["run_dir"]],
        env=child_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusyError, match=rf"is being trained by process {holder.pid} on "):
            fit(_tiny_config(), data, data, tmp_path, "p1_lock", device="cpu", progress=False, force=True)
    finally:
        holder.kill()  # like kill -9: the kernel releases the lock with the process
        holder.wait()
    again = fit(_tiny_config(), data, data, tmp_path, "p1_lock", device="cpu", progress=False)
    assert again["reused"]
    with run_lock(result["run_dir"]), pytest.raises(RunBusyError, match=rf"process {os.getpid()} "):
        with run_lock(result["run_dir"]):  # a second open file: flock refuses even within one process
            pass


def test_the_train_command_says_busy_in_one_line_with_exit_2(monkeypatch, capsys):
    import hw1lib.train

    def busy(*args, **kwargs):
        raise RunBusyError("run folder runs/demo/p1_model_a-x is being trained by process 7 on host since 10:00")

    monkeypatch.setattr(hw1lib.train, "train_command", busy)
    status, err = run_cli(["train", "p1_model_a"], capsys)
    one_error_line(status, err, "hw1 train: error: run folder", "is being trained by process 7")


# ---- interrupts ---------------------------------------------------------------------------------------

_TRAIN_CLI = textwrap.dedent("""
    import os, signal, sys, torch
    from types import SimpleNamespace
    import hw1lib.train as train
    from hw1lib.cli import main
    from hw1lib.config import TrainConfig

    out, send = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    data = SimpleNamespace(images=torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8),
                           labels=torch.arange(8) % 2, key="k", folder="tiny")
    train.get_config = lambda *a, **k: TrainConfig(
        task="classification", model="vgg_like", num_classes=2, epochs=3, batch_size=4,
        model_kwargs={"widths": [4, 4, 8], "hidden": 8})
    train._load = lambda *a: (data, data)
    if send != "none":  # a real signal, delivered to this process once epoch 1's files are written
        import hw1lib.fit as fit_module

        number, real_fit = getattr(signal, send), fit_module.fit
        hook = lambda epoch, row: os.kill(os.getpid(), number) if epoch == 1 else None
        fit_module.fit = lambda *a, **k: real_fit(*a, **{**k, "on_epoch_end": hook})
    sys.exit(main(["train", "p1_model_a", "--out-dir", out, "--device", "cpu"]))
""")


def _train_cli(out: Path, send: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _TRAIN_CLI, str(out), send], env=child_env(), capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize("send, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_during_training_ends_in_one_line_and_the_rerun_resumes(send, status, tmp_path):
    stopped = _train_cli(tmp_path, send)
    assert stopped.returncode == status, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]  # after the start line and the progress bars
    assert "Traceback" not in stopped.stderr and stopped.stderr.count("hw1 train:") == 1, stopped.stderr
    assert last.startswith("hw1 train: interrupted") and last.endswith(
        "after epoch 1 of 3; run the same command (or cell) to resume"
    )
    resumed = _train_cli(tmp_path, "none")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from epoch 1 of 3 and trained" in resumed.stdout
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert not list(run_dir.rglob("*.tmp[0-9]*"))


def test_an_interrupted_cell_shows_one_line_in_ipython():
    """In JupyterLab and papermill the kernel is IPython: the cell's error shows the message, not 40 frames."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.user_ns["TrainingInterrupted"] = TrainingInterrupted
    with capture_output() as captured:
        shell.run_cell("raise TrainingInterrupted('interrupted after epoch 2 of 9; run the same command (or cell)')")
    text = (captured.stdout + captured.stderr).strip()
    assert text == "TrainingInterrupted: interrupted after epoch 2 of 9; run the same command (or cell)", text


def test_the_notebook_line_says_resumed():
    from hw1lib.notebook import _action

    assert _action({"reused": False, "resumed_from_epoch": 4, "epochs_planned": 9}) == "resumed from epoch 4 of 9"
    assert _action({"reused": False, "resumed_from_epoch": 0, "epochs_planned": 9}) == "trained now"


# ---- images too large ---------------------------------------------------------------------------------


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` and carries almost no data: it costs nothing to make, and any
    attempt to decode it fails, so a size error proves the size came from the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets the package's filter
@pytest.mark.parametrize("side, words", [(20000, "image is too large"), (10000, "above the limit of 36 Mpx")])
def test_a_huge_image_is_refused_from_its_header(side, words, tmp_path, ckpt, capsys):
    folder = tmp_path / "p2"
    folder.mkdir()
    png_header_only(folder / "0000.jpg", side, side)  # Pillow reads by content: a PNG named .jpg
    status, err = run_cli(segment(folder, tmp_path / "out", ckpt["seg"]), capsys)
    one_error_line(status, err, "0000.jpg: image is", words, "expected a smaller image")
    assert not (tmp_path / "out").exists()


def test_a_large_image_of_the_wrong_size_is_refused_before_decoding(tmp_path, ckpt, capsys):
    folder = tmp_path / "p1"
    folder.mkdir()
    png_header_only(folder / "1.png", 5000, 5000)
    status, err = run_cli(classify(folder, tmp_path / "a.csv", ckpt["cls"]), capsys)
    one_error_line(status, err, "1.png: image is 5000x5000, expected 32x32")


class _PixelModel(torch.nn.Module):
    """A 1x1 convolution: each pixel's logits depend on that pixel alone, so tiles must agree exactly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 7, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


def test_tiled_segmentation_equals_whole_image_segmentation():
    image = np.random.default_rng(0).integers(0, 255, (700, 1100, 3), dtype=np.uint8)
    model = _PixelModel().eval()
    tiled = predict_mask(model, image, torch.device("cpu"), tile=256, overlap=64)
    whole = predict_mask(model, image, torch.device("cpu"), tile=2048)
    assert tiled.shape == (700, 1100) and np.array_equal(tiled, whole)
    assert _starts(700, 256, 192) == [0, 192, 384, 444] and _starts(200, 256, 192) == [0]


def test_a_2448_satellite_image_segments_under_a_4_gb_memory_limit(tmp_path):
    """A real limit: RLIMIT_AS of 4 GiB on the child (address space, which counts more than resident memory).
    Measured by hand with the full-width FCN32s (537 MB of weights): 1.8 GB resident, benchmarks/RESULTS.md."""
    import resource

    folder = tmp_path / "p2"
    folder.mkdir()
    save_image(folder / "0000.jpg", size=(2448, 2448))
    limit = 4 * 1024**3

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-m", "hw1lib", *segment(folder, tmp_path / "out", str(_narrow_fcn(tmp_path / "n.pt")))],
        env=child_env(), capture_output=True, text=True, timeout=300, preexec_fn=cap,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "out" / "0000.png").size == (2448, 2448)


# ---- messages that misled -----------------------------------------------------------------------------


def test_a_folder_given_as_checkpoint_is_called_a_folder(tmp_path, p1_dir, ckpt, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ckpt["cls"], run / "best.pt")
    status, err = run_cli(classify(p1_dir, tmp_path / "a.csv", str(run)), capsys)
    one_error_line(status, err, f"checkpoint {run} is a folder, not a checkpoint file", "--run", "best.pt")


def test_a_json_file_given_as_checkpoint_is_not_called_unsafe(tmp_path, p1_dir, capsys):
    path = tmp_path / "metrics.json"
    path.write_text('{"best_val_accuracy": 0.5}\n')
    status, err = run_cli(classify(p1_dir, tmp_path / "a.csv", str(path)), capsys)
    one_error_line(status, err, "metrics.json is not a readable checkpoint: it is JSON text", "torch.save")
    assert "arbitrary code" not in err


def test_a_checkpoint_of_meta_tensors_is_refused_in_one_line(tmp_path, p1_dir, capsys):
    config = TrainConfig(task="classification", model="vgg_like", num_classes=50, model_kwargs={"widths": [4, 4, 8]})
    with torch.device("meta"):
        model = build_model("vgg_like", num_classes=50, widths=[4, 4, 8])
    save_torch({"model": model.state_dict(), "meta": model_meta(config, model), "epoch": 1}, tmp_path / "m.pt")
    status, err = run_cli(classify(p1_dir, tmp_path / "a.csv", str(tmp_path / "m.pt")), capsys)
    one_error_line(status, err, "m.pt holds", "tensors without data (on the 'meta' device")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"profile": "nonsense"}, "unknown profile 'nonsense'; valid profiles: smoke, demo, full"),
        ({"data_seed": "abc"}, "data_seed must be a whole number (e.g. -p data_seed 0), got 'abc' (str)"),
    ],
)
def test_papermill_parameters_are_checked_first(kwargs, words):
    """What `papermill -p profile nonsense` / `-p data_seed abc` hand the notebooks' set-up: refused before any
    stand-in is looked at (which said "unknown stand-in size" or suggested overwriting the stand-in)."""
    with pytest.raises(ValueError) as info:
        prepare_data_root("", **{"profile": "smoke", "data_seed": 0, **kwargs})
    assert str(info.value) == words


def test_a_training_seed_that_is_not_a_number_is_refused_by_the_notebook_set_up_first():
    from hw1lib.notebook import setup

    with pytest.raises(ValueError, match=r"^seed must be a whole number \(e.g. -p seed 0\), got 'abc' \(str\)$"):
        setup("p1_model_a", profile="smoke", seed="abc")
