"""Build the report: run notebooks 01-05 and the report notebook with papermill, then export HTML and PDF.

The executed notebooks are kept beside the report (``.ipynb`` and ``.html`` with code); the report
itself is exported with code hidden. A failing notebook stops the build with an error naming the
notebook and the cell; finished trainings stay in their run folders and are reused by the next build.
"""

from __future__ import annotations

import time
from pathlib import Path

from hw1lib.config import PROFILES
from hw1lib.io import save_json
from hw1lib.paths import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
TRAINING_NOTEBOOKS = ("01_p1_model_a", "02_p1_model_b", "03_p1_representations", "04_p2_model_a", "05_p2_model_b")
REPORT_NOTEBOOK = "06_report"


class ReportError(RuntimeError):
    """A notebook failed while building the report (the message names the notebook and the cell)."""


def _execute(notebook: Path, output: Path, parameters: dict) -> None:
    """Execute one notebook with papermill; a failure raises :class:`ReportError` naming notebook and cell."""
    import papermill as pm

    try:
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(NOTEBOOK_DIR),
                            kernel_name="python3", progress_bar=False)
    except pm.PapermillExecutionError as error:
        raise ReportError(f"{notebook.name} failed in cell [{error.exec_count}] ({error.ename}: {error.evalue}). "
                          f"The executed copy with the traceback is {output}; finished trainings are kept in their "
                          "run folders and will be reused.") from None


def build_report(profile: str = "demo", data: str = "", out_dir: str | Path | None = None, device: str = "auto",
                 seed: int = 0) -> dict[str, Path]:
    """Run notebooks 01-05 and the report notebook, then export HTML and PDF.

    Args:
        profile: ``smoke``, ``demo`` or ``full``.
        data: the real data root; ``""`` generates/uses the stand-in.
        out_dir: where the report goes (default ``report/<profile>``).
        device: ``auto``, ``cpu`` or ``cuda``.
        seed: the notebooks' seed.

    Returns:
        paths of what was written: ``html``, ``pdf`` (absent when no PDF tool is installed), ``notebooks``.
    """
    from hw1lib.data import prepare_data_root
    from hw1lib.export import PdfToolMissing, export_html, html_to_pdf

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {list(PROFILES)}")

    out = Path(out_dir) if out_dir else REPO_ROOT / "report" / profile
    executed = out / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    prepare_data_root(data, profile, seed)  # a bad data path fails here, before any training
    parameters = {"data_root": str(data), "profile": profile, "device": device, "seed": seed, "out_dir": ""}
    timings: dict[str, float] = {}
    for name in TRAINING_NOTEBOOKS:
        started = time.perf_counter()
        print(f"[report] running {name}.ipynb ...", flush=True)
        _execute(NOTEBOOK_DIR / f"{name}.ipynb", executed / f"{name}.ipynb", parameters)
        timings[name] = time.perf_counter() - started
        print(f"[report] {name}.ipynb done in {timings[name]:.0f} s", flush=True)
    save_json(timings, out / "timings.json")
    report_params = {"profile": profile, "out_dir": "", "timings_file": str(out / "timings.json")}
    _execute(NOTEBOOK_DIR / f"{REPORT_NOTEBOOK}.ipynb", executed / f"{REPORT_NOTEBOOK}.ipynb", report_params)
    written = {"html": export_html(executed / f"{REPORT_NOTEBOOK}.ipynb", out / "report.html", hide_code=True),
               "notebooks": executed}
    for name in (*TRAINING_NOTEBOOKS, REPORT_NOTEBOOK):
        export_html(executed / f"{name}.ipynb", executed / f"{name}.html", hide_code=False)
    try:
        written["pdf"] = html_to_pdf(out / "report.html", out / "report.pdf")
    except PdfToolMissing as missing:
        print(f"[report] HTML only: {missing}")
    print(f"[report] done: {', '.join(str(p) for p in written.values())}")
    return written
