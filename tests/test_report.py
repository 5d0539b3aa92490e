"""End to end on the smoke profile: notebooks 01-05 under papermill, the report notebook, HTML and PDF.

One module-scoped build serves every test here (it takes a minute or two on 2 cores): the notebooks'
run folders are checked for sane metrics, and the PDF's text for the ten question headings and for the
numbers of the metrics files.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import subprocess

import nbformat
import pytest

from hw1lib.build import ReportError, _execute, _kernel_environment, build_report
from hw1lib.data.standin import generate_standin
from hw1lib.experiments import EXPERIMENTS, READING_NOTEBOOKS, training_notebooks
from hw1lib.report import load_experiments

QUESTIONS = [
    "1. Architecture of model A",
    "2. Validation accuracy of model A and model B",
    "3. Implementation details of model A",
    "4. Model B and how it differs from model A",
    "5. PCA of model A",
    "6. t-SNE of the same layer",
    "7. Architecture of model A: VGG16 + FCN32s",
    "8. Architecture of model B and how it differs from model A",
    "9. mIoU of both models on the validation set",
    "10. Predicted masks of 0013, 0062 and 0104",
]
#: the report's sections beyond the course's questions (issue 14)
EXTRA_SECTIONS = [
    "Beyond question 2: accuracy per class and the most confused classes",
    "Beyond question 10: model A's masks beside model B's",
]


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        for name, folder in [("HW1_RUNS", "runs"), ("HW1_FIGURES", "figures"), ("HW1_CACHE", "cache")]:
            patch.setenv(name, str(base / folder))
        generate_standin(base / "data", size="smoke")
        written = build_report(profile="smoke", data=str(base / "data"), out_dir=base / "out", device="cpu")
        yield {
            "base": base,
            "written": written,
            "runs": load_experiments(base / "runs" / "smoke", profile="smoke"),
        }


@pytest.mark.slow
def test_notebooks_write_sane_metrics(smoke_build):
    for name, run in smoke_build["runs"].items():
        metric = run.metrics["metric"]
        assert metric == ("acc" if name.startswith("p1") else "miou")
        best = run.metrics[f"best_val_{metric}"]
        assert math.isfinite(best) and 0.0 <= best <= 1.0, name
        assert len(run.history) == run.metrics["final_epoch"] >= 1
        assert run.history["train_loss"].map(math.isfinite).all()
        assert (run.run_dir / "best.pt").exists() and run.params["environment"]["device"] == "cpu"
    masks = sorted(p.name for p in (smoke_build["runs"]["p2_model_b"].run_dir / "masks").glob("epoch_*.npz"))
    assert len(masks) == smoke_build["runs"]["p2_model_b"].metrics["final_epoch"]
    embeddings = smoke_build["runs"]["p1_model_a"].run_dir / "embeddings.npz"
    assert embeddings.exists()  # notebook 03 cached its projections for the report
    figures = {p.name for p in (smoke_build["base"] / "figures" / "smoke").iterdir()}
    assert {
        "p1_model_a_curves.png",
        "p1_model_a_tsne.png",
        "p1_model_a_pca.png",
        "p2_model_b_masks.png",
        "p2_model_a_architecture.png",
    } <= figures


@pytest.mark.slow
def test_executed_notebooks_and_html_are_kept_beside_the_report(smoke_build):
    folder = smoke_build["written"]["notebooks"]
    for stem in ("01_p1_model_a", "03_p1_representations", "05_p2_model_b", "06_report"):
        assert (folder / f"{stem}.ipynb").exists() and (folder / f"{stem}.html").exists()
    report_html = smoke_build["written"]["html"].read_text()
    assert "load_experiments(" not in report_html  # code cells are hidden in the report
    assert "Traceback" not in report_html and "Warning" not in report_html
    timings = json.loads((smoke_build["written"]["html"].parent / "timings.json").read_text())
    notebooks = {e.notebook for e in EXPERIMENTS.values()} | set(READING_NOTEBOOKS)
    assert set(timings["notebooks"]) == set(training_notebooks()) == notebooks
    # the build's start beside each run's finish: every run of this fresh build was trained by it
    text = html.unescape(report_html)
    assert "this build's time for the notebook" in text and "training time of the run" in text
    assert text.count("trained by this build") == len(EXPERIMENTS) and "reused (finished" not in text


@pytest.mark.slow
def test_pdf_has_every_question_and_the_numbers_of_the_metrics_files(smoke_build):
    if "pdf" not in smoke_build["written"] or not shutil.which("pdftotext"):
        pytest.skip("no headless Chromium / pdftotext: run scripts/install_pdf_tools.sh")
    text = subprocess.run(
        ["pdftotext", "-layout", str(smoke_build["written"]["pdf"]), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(text.split())
    for heading in QUESTIONS + EXTRA_SECTIONS:
        assert heading in flat, heading
    for name, run in smoke_build["runs"].items():
        assert f"{run.best_value:.4f}" in flat, (name, run.best_value)
    assert "stand-in" in flat and "not comparable" in flat


def _one_cell_notebook(path, code: str):
    """A notebook at ``path``: a ``parameters`` cell (``x = 1``) and one cell of ``code``, for ``_execute``."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(code),
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_a_failing_notebook_is_named_with_its_cell(tmp_path):
    source = _one_cell_notebook(tmp_path / "07_broken.ipynb", "raise ValueError('broken on purpose')")
    with pytest.raises(ReportError, match=r"07_broken.ipynb failed in cell \[3\] \(ValueError: broken on purpose\)"):
        _execute(source, tmp_path / "out.ipynb", {"x": 2})


@pytest.mark.slow
def test_progress_bars_are_text_that_ends_at_100_percent(smoke_build):
    notebook = nbformat.read(smoke_build["written"]["notebooks"] / "01_p1_model_a.ipynb", as_version=4)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    streams = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    bars = [line for line in streams.splitlines() if line.startswith("epoch ")]
    assert bars and all("100%" in line for line in bars) and "\r" not in streams
    html = (smoke_build["written"]["notebooks"] / "01_p1_model_a.html").read_text()
    assert "100%" in html


def test_kernels_get_text_bars_and_sleeping_openmp_threads_unless_the_user_chose(tmp_path, monkeypatch):
    code = "import os; print(os.environ['HW1_PROGRESS'], os.environ['OMP_WAIT_POLICY'])"
    _one_cell_notebook(tmp_path / "env.ipynb", code)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    _execute(tmp_path / "env.ipynb", tmp_path / "out.ipynb", {"x": 2})
    printed = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs[0]["text"]
    assert printed.split() == ["text", "PASSIVE"]
    assert "OMP_WAIT_POLICY" not in os.environ  # restored after the build
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's own choice wins, and survives the build
    with _kernel_environment():
        assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_kernels_talk_over_ipc_so_the_build_prints_no_unencrypted_tcp_warning(tmp_path, capfd):
    _one_cell_notebook(tmp_path / "quiet.ipynb", "print(get_ipython().kernel.session.key != b'')")
    _execute(tmp_path / "quiet.ipynb", tmp_path / "out.ipynb", {"x": 2})
    captured = capfd.readouterr()
    assert "TCP" not in captured.out + captured.err and "encryption" not in captured.out + captured.err
    assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[-1].outputs[0]["text"].strip() == "True"
