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

from jupyter_client.manager import AsyncKernelManager

from hw1lib import progress
from hw1lib.config import PROFILES
from hw1lib.experiments import notebook_experiment, training_notebooks
from hw1lib.files import save_json, write_text
from hw1lib.paths import REPO_ROOT
from hw1lib.runs import profile_folder

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: the notebooks run before the report: every registered experiment's, and the ones that read a run (registry)
TRAINING_NOTEBOOKS = tuple(training_notebooks())
REPORT_NOTEBOOK = "06_report"


class ReportError(RuntimeError):
    """A notebook failed while building the report (the message names the notebook and the cell)."""


#: set in the kernels' environment for the build (a user's own value of a variable wins; see below)
KERNEL_ENVIRONMENT = {
    progress.ENV_VAR: "text",
    # OpenMP reads it once, at process start: waiting threads sleep instead of spinning, so that a busy core
    # beside the build slows training in proportion instead of several times over (benchmarks/RESULTS.md,
    # "Thread settings under load"); results are bit-identical to the default policy
    "OMP_WAIT_POLICY": "PASSIVE",
}


class IPCKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels talk over local IPC sockets instead of TCP.

    Why: over TCP every kernel warns that its traffic is unencrypted (any local user could connect to its ports),
    once per notebook of the build; IPC sockets live in the user's own Jupyter runtime folder, so there is
    nothing to warn about and nothing reachable from outside.
    """

    transport = "ipc"


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
                kernel_manager_class=f"{__name__}.{IPCKernelManager.__name__}",
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
    *,
    seed: int = 0,
    fast_dev_run: bool = False,
    overrides: dict[str, dict] | None = None,
    data_seed: int = 0,
) -> dict[str, Path]:
    """Run notebooks 01-05 and the report notebook, then export HTML and PDF.

    Args:
        profile: ``smoke``, ``demo`` or ``full``.
        data: the real data root; ``""`` generates/uses the stand-in.
        out_dir: where the report goes (default ``report/<profile>``, ``report/<profile>-fastdev``).
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: the notebooks' training seed.
        overrides: per experiment, recipe fields to change (``{"p1_model_a": {"lr": 1e-3}}``): each notebook gets
            its experiment's, the report the whole dict, so it reads the runs they trained.
        data_seed: the stand-in's content seed (ignored for real data).
        fast_dev_run: cap every training (2 epochs of 2 batches, 1 validation batch) to prove the whole
            path quickly; the report says its numbers mean nothing.

    Returns:
        paths of what was written: ``html``, ``pdf`` (absent when no PDF tool is installed), ``notebooks``.
    """
    from hw1lib.config import get_config
    from hw1lib.data import prepare_data_root
    from hw1lib.export import PdfToolMissing, export_html, html_to_pdf

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILES)}")

    out = Path(out_dir) if out_dir else REPO_ROOT / "report" / profile_folder(profile, fast_dev_run)
    overrides = dict(overrides or {})
    for experiment, changes in overrides.items():  # a typo fails here, before any notebook runs
        get_config(experiment, profile, fast_dev_run=fast_dev_run, **changes)
    prepare_data_root(data, profile, data_seed, fast_dev_run=fast_dev_run)  # a bad data path fails here, first
    executed = out / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    parameters = {
        "data_root": str(data),
        "profile": profile,
        "device": device,
        "seed": seed,
        "data_seed": data_seed,
        "out_dir": "",
        "fast_dev_run": fast_dev_run,
    }
    # the start lets the report tell the runs this build trained from the ones it reused (their finish times)
    timings: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "notebooks": {}}
    notebooks = training_notebooks()
    for name in notebooks:
        started = time.perf_counter()
        print(f"[report] running {name}.ipynb ...", flush=True)
        own = {"overrides": overrides.get(notebook_experiment(name), {})}
        _execute(NOTEBOOK_DIR / f"{name}.ipynb", executed / f"{name}.ipynb", {**parameters, **own})
        seconds = time.perf_counter() - started
        timings["notebooks"][name] = seconds
        print(f"[report] {name}.ipynb done in {seconds:.0f} s", flush=True)
    save_json(timings, out / "timings.json")
    report_params = {
        "profile": profile,
        "out_dir": "",
        "timings_file": str(out / "timings.json"),
        "fast_dev_run": fast_dev_run,
        "seed": seed,
        "overrides": overrides,
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
    for name in (*notebooks, REPORT_NOTEBOOK):
        export_html(executed / f"{name}.ipynb", executed / f"{name}.html", hide_code=False)
    try:
        written["pdf"] = html_to_pdf(out / "report.html", out / "report.pdf")
    except PdfToolMissing as missing:
        print(f"[report] HTML only: {missing}")
    print(f"[report] exported in {time.perf_counter() - started:.0f} s", flush=True)
    print(f"[report] done: {', '.join(str(p) for p in written.values())}")
    return written
