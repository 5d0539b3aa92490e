"""``python -m benchmarks.bench [--quick] [--device D] [--out PATH]``: run the benchmark, print its tables, and
write the results where ``--out`` says (JSON, and the same tables in markdown beside it, ``PATH`` with ``.md``).

Why no default location in the repository: committed figures (``benchmarks/results-<device>.json``) are
replaced only on purpose, by naming them (as ``make bench`` does).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from benchmarks.bench.plan import make_plan
from benchmarks.bench.run import run_benchmark
from benchmarks.bench.tables import format_markdown, format_tables
from benchmarks.bench.timing import log
from hw1lib.files import save_json, write_text
from hw1lib.precision import resolve_device


def default_out(device: torch.device, quick: bool) -> Path | None:
    """Where results go without ``--out``: a temp file for ``--quick``; nowhere for a full run (tables only)."""
    if quick:
        return Path(tempfile.gettempdir()) / f"hw1-bench-quick-{device.type}.json"
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv`` without the program name; ``None``: ``sys.argv``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Training/inference speed of every model, levers of P1 model A, and the project's data path "
        "against a conventional one. Prints the tables; see benchmarks/README.md.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one thread (CI, about a minute on a CPU)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument(
        "--out",
        default=None,
        type=Path,
        help="JSON file for everything measured; the tables go beside it as markdown (same name, "
        ".md). Without --out a full run only prints the tables and writes nothing; --quick "
        "writes to a temporary file",
    )
    args = parser.parse_args(argv)
    if args.out is not None and args.out.suffix == ".md":
        parser.error(f"--out {args.out}: the JSON goes there and the markdown beside it; give a .json name")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark as ``argv`` asks, print the tables, write the JSON and markdown; return the results."""
    args = parse_args(argv)
    device = resolve_device(args.device)
    plan = make_plan(bool(args.quick), device)
    out = args.out if args.out is not None else default_out(device, plan.quick)
    if out is None:
        log("no --out: the tables are printed, nothing is written")
    command = (
        "python -m benchmarks.bench"
        + (" --quick" if args.quick else "")
        + f" --device {args.device}"
        + (f" --out {args.out}" if args.out else "")
    )
    results = run_benchmark(device, plan, command)
    if out is not None:
        save_json(results, out)
        write_text(out.with_suffix(".md"), format_markdown(results))
    print(format_tables(results))
    if out is not None:
        print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return results


if __name__ == "__main__":
    main()
