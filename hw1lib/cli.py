"""Command line: ``python -m hw1lib <command>`` or ``hw1 <command>``.

Commands: ``standin`` (generate the stand-in data), ``classify`` and ``segment`` (the grader's
interfaces), ``miou`` (the official metric on two folders), ``runs`` and ``compare`` (the run folders as a
table, two runs side by side), ``evaluate`` (a checkpoint's score on a labelled folder), ``viz-mask`` (a mask
overlay), ``report`` (run the notebooks and export the report) and ``weights`` (list or fetch a profile's
pretrained files).
Each command is a thin wrapper over one package function; errors a user can fix (bad input, a path that
cannot be read or written, a device that is not there, a run folder another process is training) are
printed as one line naming the path, exit status 2; a failed step (a notebook, the PDF, a download) exits 1;
a training stopped by Ctrl-C or SIGTERM says after which epoch in one line and exits 130 or 143.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from hw1lib.experiments import experiment_names
from hw1lib.files import TMP_MARK


def _standin(args: argparse.Namespace) -> None:
    from hw1lib.data.standin import generate_standin

    summary = generate_standin(
        Path(args.out_dir),
        size=args.size,
        seed=args.seed,
        p2_image_size=args.p2_image_size,
        overwrite=args.overwrite,
        progress=True,
    )
    print(f"stand-in ({args.size}) ready in {args.out_dir}: {summary}")


def _classify(args: argparse.Namespace) -> None:
    from hw1lib.files import write_target
    from hw1lib.grading import classify_folder

    through = write_target(args.output_csv) == "through"  # /dev/stdout, a FIFO: the CSV alone goes there
    rows = classify_folder(args.image_dir, args.output_csv, args.checkpoint, args.device, run=args.run_folder)
    print(f"wrote {rows} rows to {args.output_csv}", file=sys.stderr if through else sys.stdout)


def _segment(args: argparse.Namespace) -> None:
    from hw1lib.grading import segment_folder

    count = segment_folder(args.image_dir, args.output_dir, args.checkpoint, args.device, run=args.run_folder)
    print(f"wrote {count} masks to {args.output_dir}")


def _miou(args: argparse.Namespace) -> None:
    from hw1lib.grading import format_miou, score_folders

    print(format_miou(score_folders(args.gt_dir, args.pred_dir, class_indices=args.class_indices)))


def _runs(args: argparse.Namespace) -> None:
    from hw1lib.runs_table import format_runs_table, runs_table

    table = runs_table(args.root or None, args.profile, args.experiment)
    if args.csv:
        print(table.to_csv(index=False), end="")
    elif table.empty:
        from hw1lib.paths import runs_dir

        print(f"no run folders under {args.root or runs_dir()} (with the filters given)")
    else:
        print(format_runs_table(table))


def _compare(args: argparse.Namespace) -> None:
    from hw1lib.runs_table import compare_runs, format_comparison

    print(format_comparison(compare_runs(args.run_a, args.run_b, args.root or None)))


def _evaluate(args: argparse.Namespace) -> None:
    from hw1lib.evaluation import evaluate_checkpoint, format_evaluation

    print(format_evaluation(evaluate_checkpoint(args.checkpoint_or_run, args.data_dir, args.device)))


def _viz_mask(args: argparse.Namespace) -> None:
    from hw1lib.data.images import read_rgb
    from hw1lib.data.palette import decode_mask
    from hw1lib.viz import plot_overlay, save_figure

    image, mask = read_rgb(Path(args.image)), decode_mask(read_rgb(Path(args.mask)))
    if image.shape[:2] != mask.shape:
        raise ValueError(
            f"{args.mask} is {mask.shape[1]}x{mask.shape[0]} but {args.image} is {image.shape[1]}x{image.shape[0]}"
        )
    out = Path(args.out_png)
    path = save_figure(plot_overlay(image, mask, title=Path(args.image).name), out.stem, folder=out.parent)
    print(f"wrote {path}")


def _report(args: argparse.Namespace) -> None:
    from hw1lib.build import build_report

    build_report(
        profile=args.profile, data=args.data, out_dir=args.out_dir, device=args.device, fast_dev_run=args.fast_dev_run
    )


def _weights(args: argparse.Namespace) -> None:
    from hw1lib.models.weights import fetch_missing_weights, format_weights_table, required_weights

    rows = fetch_missing_weights(args.profile) if args.fetch else required_weights(args.profile)
    print(f"pretrained weights of profile {args.profile}:")
    print(format_weights_table(rows))
    missing = [row["file"] for row in rows if row["present"] is False]
    if missing:
        print(
            f"missing: {', '.join(missing)}; `python -m hw1lib weights --profile {args.profile} --fetch` "
            "downloads them (needs internet access)"
        )


def _train(args: argparse.Namespace) -> None:
    from hw1lib import distributed
    from hw1lib.config import parse_overrides
    from hw1lib.train import summary, train_command

    result = train_command(
        args.experiment,
        profile=args.profile,
        data=args.data,
        out_dir=args.out_dir,
        device=args.device,
        seed=args.seed,
        fast_dev_run=args.fast_dev_run,
        overrides=parse_overrides(args.set),
        data_seed=args.data_seed,
        label=args.name,
    )
    if distributed.is_main():
        print(summary(result))


def _checkpoint_options(p: argparse.ArgumentParser, task: str) -> None:
    """``--checkpoint``, ``--run`` and ``--device`` of the grader's commands (hw1_1.sh/hw1_2.sh pass
    HW1_CHECKPOINT and HW1_RUN as these)."""
    p.add_argument(
        "--checkpoint",
        default=None,
        help=f"a checkpoint file (HW1_CHECKPOINT in the course scripts); default: the grader's rule, best.pt of the "
        f"best {task} run trained without overrides in the most complete profile (full, then demo, then smoke; "
        "never a fast dev run), named on stderr",
    )
    p.add_argument(
        "--run",
        dest="run_folder",
        metavar="RUN_DIR",
        default=None,
        help="a run folder: use its best.pt (HW1_RUN in the course scripts)",
    )
    p.add_argument("--device", default="auto")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per entry point."""
    parser = argparse.ArgumentParser(prog="hw1", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("standin", help="generate the stand-in data set in the real layout")
    p.add_argument("out_dir")
    p.add_argument("--size", choices=["smoke", "demo", "full"], default="demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--p2-image-size", type=int, default=None, help="side of the P2 images (default: the size's own)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a different stand-in in OUT_DIR "
        "(a folder without standin.json, e.g. real data, is never replaced)",
    )
    p.set_defaults(run=_standin)

    p = commands.add_parser("classify", help="write filename,label for every *.png of a folder")
    p.add_argument("image_dir")
    p.add_argument("output_csv")
    _checkpoint_options(p, "classification")
    p.set_defaults(run=_classify)

    p = commands.add_parser("segment", help="write a palette mask <stem>.png for every *.jpg of a folder")
    p.add_argument("image_dir")
    p.add_argument("output_dir")
    _checkpoint_options(p, "segmentation")
    p.set_defaults(run=_segment)

    p = commands.add_parser("miou", help="official per-class IoU and mIoU of predicted masks")
    p.add_argument("gt_dir", help="folder of {id}_mask.png ground truth")
    p.add_argument("pred_dir", help="folder of {id}.png (or {id}_sat.png) predictions")
    p.add_argument(
        "--class-indices",
        action="store_true",
        help="read single-channel masks as class indices 0..6 (default: refused; masks are RGB palette colours)",
    )
    p.set_defaults(run=_miou)

    p = commands.add_parser("runs", help="one row per run folder: parameters, status, best score, time, date")
    p.add_argument("--profile", default=None, help="only this profile's runs (smoke, demo, full)")
    p.add_argument("--experiment", default=None, help="only this experiment's runs")
    p.add_argument("--csv", action="store_true", help="the table as CSV (all columns, raw numbers)")
    p.add_argument("--root", default="", help="folder of profile folders (default: runs/, or $HW1_RUNS)")
    p.set_defaults(run=_runs)

    p = commands.add_parser("compare", help="two runs side by side: parameters that differ, metrics, per class")
    p.add_argument("run_a", help="a run folder, or its name as `hw1 runs` shows it")
    p.add_argument("run_b")
    p.add_argument("--root", default="", help="where run names are looked up (default: runs/, or $HW1_RUNS)")
    p.set_defaults(run=_compare)

    p = commands.add_parser(
        "evaluate", help="accuracy (P1) or mIoU (P2) of a checkpoint on a labelled folder, as its run measured it"
    )
    p.add_argument("checkpoint_or_run", help="a checkpoint file, or a run folder (its best.pt)")
    p.add_argument("data_dir", help="P1: {label}_{id}.png files; P2: {id}_sat.jpg + {id}_mask.png pairs")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_evaluate)

    p = commands.add_parser("viz-mask", help="draw a mask over its image (class colours and edges)")
    p.add_argument("image")
    p.add_argument("mask")
    p.add_argument("out_png")
    p.set_defaults(run=_viz_mask)

    p = commands.add_parser(
        "train", help="train one experiment into its notebook's run folder (several processes under torchrun)"
    )
    p.add_argument("experiment", choices=experiment_names())
    p.add_argument("--profile", choices=["smoke", "demo", "full"], default="demo")
    p.add_argument("--data", default="", help="real data root (default: the generated stand-in)")
    p.add_argument("--out-dir", default="", help="folder of run folders (default: the notebooks', runs/<profile>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (cuda:LOCAL_RANK under torchrun) or cuda:N")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="change recipe fields, after the experiment: train p1_model_a --set lr=1e-3 epochs=20 augment.flip=false "
        "(dotted keys reach into augment and model_kwargs; values are JSON/Python literals, else strings): a new "
        "run folder",
    )
    p.add_argument("--seed", type=int, default=0, help="training seed (weights, shuffling, augmentation)")
    p.add_argument(
        "--data-seed", type=int, default=0, help="content seed of the generated stand-in (0: the profile's own)"
    )
    p.add_argument("--name", default=None, help="a short label recorded with the run (not part of its name)")
    p.add_argument("--fast-dev-run", action="store_true", help="2 epochs of 2 batches, 1 validation batch")
    p.set_defaults(run=_train)

    p = commands.add_parser("report", help="run notebooks 01-06 and export the report as HTML and PDF")
    p.add_argument("--profile", choices=["smoke", "demo", "full"], default="demo")
    p.add_argument("--data", default="", help="real data root (default: the generated stand-in)")
    p.add_argument("--out-dir", default=None, help="default: report/<profile> (report/<profile>-fastdev)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--fast-dev-run",
        action="store_true",
        help="every training capped at 2 epochs of 2 batches, 1 validation batch, at the profile's real "
        "sizes: proves the whole path in minutes; its numbers mean nothing (runs/<profile>-fastdev)",
    )
    p.set_defaults(run=_report)

    p = commands.add_parser("weights", help="list (and --fetch) the pretrained files a profile needs")
    p.add_argument("--profile", choices=["smoke", "demo", "full"], default="full")
    p.add_argument(
        "--fetch",
        action="store_true",
        help="download the missing ones through torchvision into torch hub's cache ($TORCH_HOME)",
    )
    p.set_defaults(run=_weights)
    return parser


def _os_error_text(error: OSError) -> str:
    """``"Permission denied: /path"``: the reason and the path, without the temporary name of a staging file."""
    path = str(error.filename or "")
    if TMP_MARK in Path(path).name:  # a staging file: name the folder the user chose
        path = str(Path(path).parent)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full while writing {path}" if path else "disk full (no space left on the device)"
    return f"{error.strerror or error}: {path}" if path else str(error)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hw1`` and ``python -m hw1lib``."""
    from hw1lib.interrupts import TrainingInterrupted
    from hw1lib.locks import RunBusyError

    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except TrainingInterrupted as error:  # Ctrl-C or SIGTERM during a training: after which epoch, how to resume
        print(f"hw1 {args.command}: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        print(f"hw1 {args.command}: interrupted", file=sys.stderr)
        return 130
    except RunBusyError as error:  # another process trains this run folder: never two writers
        print(f"hw1 {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, ValueError) as error:  # bad input: the message says what to fix
        print(f"hw1 {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a path the user gave cannot be read or written (permissions, a full disk, ...)
        print(f"hw1 {args.command}: error: {_os_error_text(error)}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # a failed step (a notebook, the PDF, missing weights): said in one line
        if type(error).__module__.startswith("hw1lib"):
            print(f"hw1 {args.command}: failed: {error}", file=sys.stderr)
            return 1
        raise
    return 0
