"""Command line: ``python -m hw1lib <command>`` or ``hw1 <command>``.

Commands: ``standin`` (generate the stand-in data), ``classify`` and ``segment`` (the grader's
interfaces), ``miou`` (the official metric on two folders), ``viz-mask`` (a mask overlay), ``report``
(run the notebooks and export the report) and ``weights`` (list or fetch a profile's pretrained files).
Each command is a thin wrapper over one package function; errors a user can fix (bad input, a path that
cannot be read or written, a device that is not there) are printed as one line naming the path, exit
status 2; a failed step (a notebook, the PDF, a download) exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hw1lib.io import TMP_MARK


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
    from hw1lib.grading import classify_folder

    rows = classify_folder(args.image_dir, args.output_csv, args.checkpoint, args.device)
    print(f"wrote {rows} rows to {args.output_csv}")


def _segment(args: argparse.Namespace) -> None:
    from hw1lib.grading import segment_folder

    count = segment_folder(args.image_dir, args.output_dir, args.checkpoint, args.device)
    print(f"wrote {count} masks to {args.output_dir}")


def _miou(args: argparse.Namespace) -> None:
    from hw1lib.grading import format_miou, score_folders

    print(format_miou(score_folders(args.gt_dir, args.pred_dir)))


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
    from hw1lib.train import summary, train_command

    result = train_command(
        args.experiment,
        profile=args.profile,
        data=args.data,
        out_dir=args.out_dir,
        device=args.device,
        seed=args.seed,
        fast_dev_run=args.fast_dev_run,
    )
    if distributed.is_main():
        print(summary(result))


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
    p.add_argument("--checkpoint", default=None, help="default: best.pt of the latest finished classification run")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_classify)

    p = commands.add_parser("segment", help="write a palette mask <stem>.png for every *.jpg of a folder")
    p.add_argument("image_dir")
    p.add_argument("output_dir")
    p.add_argument("--checkpoint", default=None, help="default: best.pt of the latest finished segmentation run")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_segment)

    p = commands.add_parser("miou", help="official per-class IoU and mIoU of predicted masks")
    p.add_argument("gt_dir", help="folder of {id}_mask.png ground truth")
    p.add_argument("pred_dir", help="folder of {id}.png (or {id}_sat.png) predictions")
    p.set_defaults(run=_miou)

    p = commands.add_parser("viz-mask", help="draw a mask over its image (class colours and edges)")
    p.add_argument("image")
    p.add_argument("mask")
    p.add_argument("out_png")
    p.set_defaults(run=_viz_mask)

    p = commands.add_parser(
        "train", help="train one experiment into its notebook's run folder (several processes under torchrun)"
    )
    p.add_argument("experiment", choices=["p1_model_a", "p1_model_b", "p2_model_a", "p2_model_b"])
    p.add_argument("--profile", choices=["smoke", "demo", "full"], default="demo")
    p.add_argument("--data", default="", help="real data root (default: the generated stand-in)")
    p.add_argument("--out-dir", default="", help="folder of run folders (default: the notebooks', runs/<profile>)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (cuda:LOCAL_RANK under torchrun) or cuda:N")
    p.add_argument("--seed", type=int, default=0)
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
    return f"{error.strerror or error}: {path}" if path else str(error)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hw1`` and ``python -m hw1lib``."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
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
