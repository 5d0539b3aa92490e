"""Build the report: run notebooks 01-05 and the report notebook with papermill, then export HTML and PDF.

The executed notebooks are kept beside the report (``.ipynb`` and ``.html`` with code); the report
itself is exported with code hidden. A failing notebook stops the build with an error naming the
notebook and the cell; finished trainings stay in their run folders and are reused by the next build.

``fast_dev_run=True`` passes the notebooks' ``fast_dev_run`` parameter to every notebook: each training is
capped (:data:`hw1lib.config.FAST_DEV_RUN`) at the profile's real sizes, and runs, figures and the report go
to the profile's ``-fastdev`` folders.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hw1lib import progress
from hw1lib.config import PROFILES
from hw1lib.io import save_json, write_text
from hw1lib.paths import REPO_ROOT
from hw1lib.runs import profile_folder

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
TRAINING_NOTEBOOKS = ("01_p1_model_a", "02_p1_model_b", "03_p1_representations", "04_p2_model_a", "05_p2_model_b")
REPORT_NOTEBOOK = "06_report"


class ReportError(RuntimeError):
    """A notebook failed while building the report (the message names the notebook and the cell)."""


#: set in the kernels' environment for the build (a user's own value of a variable wins; see below)
KERNEL_ENVIRONMENT = {
    progress.ENV_VAR: "text",
    # OpenMP reads it once, at process start: waiting threads sleep instead of spinning, so that a busy core
    # beside the build slows training in proportion instead of 3-5x (benchmarks/RESULTS.md, "Thread settings
    # under load"); results are bit-identical to the default policy
    "OMP_WAIT_POLICY": "PASSIVE",
}


@contextmanager
def _kernel_environment() -> Iterator[None]:
    """Environment of the notebooks' kernels (:data:`KERNEL_ENVIRONMENT`); restored afterwards.

    The progress bars are always text (:mod:`hw1lib.progress`); ``OMP_WAIT_POLICY`` only when the user has not
    chosen one.
    """
    previous = {name: os.environ.get(name) for name in KERNEL_ENVIRONMENT}
    for name, value in KERNEL_ENVIRONMENT.items():
        if name == progress.ENV_VAR or previous[name] is None:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _merge_streams(path: Path) -> None:
    """Merge each cell's consecutive stream outputs, applying carriage returns, so a text progress bar is saved
    (and exported) as its final line instead of one line per update."""
    import nbformat
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    notebook = nbformat.read(path, as_version=4)
    notebook, _ = CoalesceStreamsPreprocessor().preprocess(notebook, {})
    write_text(path, nbformat.writes(notebook))


def _execute(notebook: Path, output: Path, parameters: dict) -> None:
    """Execute one notebook with papermill; a failure raises :class:`ReportError` naming notebook and cell."""
    import papermill as pm

    try:
        with _kernel_environment():
            pm.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                cwd=str(NOTEBOOK_DIR),
                kernel_name="python3",
                progress_bar=False,
            )
    except pm.PapermillExecutionError as error:
        raise ReportError(
            f"{notebook.name} failed in cell [{error.exec_count}] ({error.ename}: {error.evalue}). "
            f"The executed copy with the traceback is {output}; finished trainings are kept in their "
            "run folders and will be reused."
        ) from None
    _merge_streams(output)


def build_report(
    profile: str = "demo",
    data: str = "",
    out_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    fast_dev_run: bool = False,
) -> dict[str, Path]:
    """Run notebooks 01-05 and the report notebook, then export HTML and PDF.

    Args:
        profile: ``smoke``, ``demo`` or ``full``.
        data: the real data root; ``""`` generates/uses the stand-in.
        out_dir: where the report goes (default ``report/<profile>``, ``report/<profile>-fastdev``).
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: the notebooks' seed.
        fast_dev_run: cap every training (2 epochs of 2 batches, 1 validation batch) to prove the whole
            path quickly; the report says its numbers mean nothing.

    Returns:
        paths of what was written: ``html``, ``pdf`` (absent when no PDF tool is installed), ``notebooks``.
    """
    from hw1lib.data import prepare_data_root
    from hw1lib.export import PdfToolMissing, export_html, html_to_pdf

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILES)}")

    out = Path(out_dir) if out_dir else REPO_ROOT / "report" / profile_folder(profile, fast_dev_run)
    prepare_data_root(data, profile, seed, fast_dev_run=fast_dev_run)  # a bad data path fails here, first
    executed = out / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    parameters = {
        "data_root": str(data),
        "profile": profile,
        "device": device,
        "seed": seed,
        "out_dir": "",
        "fast_dev_run": fast_dev_run,
    }
    timings: dict[str, float] = {}
    for name in TRAINING_NOTEBOOKS:
        started = time.perf_counter()
        print(f"[report] running {name}.ipynb ...", flush=True)
        _execute(NOTEBOOK_DIR / f"{name}.ipynb", executed / f"{name}.ipynb", parameters)
        timings[name] = time.perf_counter() - started
        print(f"[report] {name}.ipynb done in {timings[name]:.0f} s", flush=True)
    save_json(timings, out / "timings.json")
    report_params = {
        "profile": profile,
        "out_dir": "",
        "timings_file": str(out / "timings.json"),
        "fast_dev_run": fast_dev_run,
    }
    started = time.perf_counter()
    print(f"[report] running {REPORT_NOTEBOOK}.ipynb ...", flush=True)
    _execute(NOTEBOOK_DIR / f"{REPORT_NOTEBOOK}.ipynb", executed / f"{REPORT_NOTEBOOK}.ipynb", report_params)
    print(f"[report] {REPORT_NOTEBOOK}.ipynb done in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    written = {
        "html": export_html(executed / f"{REPORT_NOTEBOOK}.ipynb", out / "report.html", hide_code=True),
        "notebooks": executed,
    }
    for name in (*TRAINING_NOTEBOOKS, REPORT_NOTEBOOK):
        export_html(executed / f"{name}.ipynb", executed / f"{name}.html", hide_code=False)
    try:
        written["pdf"] = html_to_pdf(out / "report.html", out / "report.pdf")
    except PdfToolMissing as missing:
        print(f"[report] HTML only: {missing}")
    print(f"[report] exported in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"[report] done: {', '.join(str(p) for p in written.values())}")
    return written
