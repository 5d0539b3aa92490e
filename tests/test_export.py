"""Tests of hw1lib.export: offline HTML from an executed notebook, and PDF printing by headless Chromium.

The PDF test needs a browser and pdftotext (``scripts/install_pdf_tools.sh`` installs both; ``make test``
runs it first) and is skipped with the reason when they are missing. The failure-path tests use fake
browsers (tiny shell scripts) and run everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from hw1lib import export
from hw1lib.export import PdfExportError, PdfToolMissing, export_html, find_pdf_browser, html_to_pdf

HEADING = "1. Architecture"
PRINTED = "43038"  # printed by the code cell; appears only if the cell ran
SOURCE_NAME = "answer_token"  # appears only where the code is shown ("_" is not in base64 image data)
CODE = f"{SOURCE_NAME} = 6 * 7173\nprint({SOURCE_NAME})"


@pytest.fixture(scope="module")
def executed_notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-cell notebook (heading, printed number, matplotlib figure), executed and saved."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"## {HEADING}\nA tiny stand-in for the report."),
        nbformat.v4.new_code_cell(CODE),
        nbformat.v4.new_code_cell(
            "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
            "fig, ax = plt.subplots(figsize=(4, 3))\nax.plot([0, 1, 2], [2, 0, 1]);"
        ),
    ]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    path = tmp_path_factory.mktemp("nb") / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def report_html(executed_notebook: Path) -> Path:
    return export_html(executed_notebook, executed_notebook.parent / "html" / "tiny.html")


def _fake_browser(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-chromium"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return script


def test_export_html_hides_code_and_needs_no_network(report_html: Path) -> None:
    html = report_html.read_text(encoding="utf-8")
    assert SOURCE_NAME not in html and "subplots" not in html
    assert PRINTED in html and HEADING in html
    assert "data:image/png;base64," in html
    for remote in ('<script src="http', "<script src='http", '<link href="http', "cdnjs.cloudflare.com"):
        assert remote not in html
    assert "In&nbsp;[" not in html  # prompts hidden too
    assert "@page { size: A4" in html


def test_export_html_keeps_code_when_asked(executed_notebook: Path, tmp_path: Path) -> None:
    html = export_html(executed_notebook, tmp_path / "with_code.html", hide_code=False).read_text()
    assert SOURCE_NAME in html and "subplots" in html
    assert PRINTED in html and "<script src=" not in html


def test_export_html_missing_notebook_names_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.ipynb"):
        export_html(tmp_path / "nope.ipynb", tmp_path / "x.html")


def test_html_to_pdf_prints_heading_and_number(report_html: Path, tmp_path: Path) -> None:
    browser = find_pdf_browser()
    if browser is None or shutil.which("pdftotext") is None:
        pytest.skip("no headless Chromium or pdftotext: run scripts/install_pdf_tools.sh")
    pdf = html_to_pdf(report_html, tmp_path / "out" / "tiny.pdf", browser=browser)
    pdftotext = ["pdftotext", "-layout", str(pdf), "-"]
    text = subprocess.run(pdftotext, capture_output=True, text=True, check=True).stdout
    assert HEADING in text and PRINTED in text
    assert SOURCE_NAME not in text
    assert [p.name for p in pdf.parent.iterdir()] == ["tiny.pdf"]  # no staging folder left behind


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('echo "fake chromium: cannot open display :0" >&2\nexit 1', "cannot open display :0"),
        # exits 0 but leaves a half-written, non-PDF file where it was told to print
        (
            'for a in "$@"; do case "$a" in\n  --print-to-pdf=*) printf half > "${a#--print-to-pdf=}";;\nesac; done',
            "not a PDF",
        ),
    ],
    ids=["exit-1", "half-written"],
)
def test_html_to_pdf_failure_keeps_existing_pdf(tmp_path: Path, body: str, expected: str) -> None:
    browser = _fake_browser(tmp_path, body)
    html = tmp_path / "page.html"
    html.write_text("<h1>hello</h1>")
    out = tmp_path / "out"
    out.mkdir()
    good = out / "report.pdf"
    good.write_bytes(b"%PDF-1.7 an earlier good report")
    with pytest.raises(PdfExportError) as err:
        html_to_pdf(html, good, browser=browser)
    assert expected in str(err.value) and str(browser) in str(err.value)
    assert good.read_bytes() == b"%PDF-1.7 an earlier good report"
    assert [p.name for p in out.iterdir()] == ["report.pdf"]


def test_html_to_pdf_timeout_kills_the_browser_and_its_children(tmp_path: Path) -> None:
    # the child sleep keeps the output pipe open: only killing the whole process group ends the wait
    browser = _fake_browser(tmp_path, "sleep 30 &\nwait")
    html = tmp_path / "page.html"
    html.write_text("<h1>hello</h1>")
    start = time.monotonic()
    with pytest.raises(PdfExportError, match="within 1 s"):
        html_to_pdf(html, tmp_path / "report.pdf", browser=browser, timeout=1)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "report.pdf").exists()


def test_html_to_pdf_without_browser_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "find_pdf_browser", lambda: None)
    html = tmp_path / "page.html"
    html.write_text("<h1>hello</h1>")
    with pytest.raises(PdfToolMissing) as err:
        html_to_pdf(html, tmp_path / "report.pdf")
    message = str(err.value)
    for hint in ("sudo apt-get install", "chromium-headless-shell", "HW1_CHROMIUM"):
        assert hint in message


def test_find_pdf_browser_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_browser(tmp_path, "exit 0")
    monkeypatch.setenv("HW1_CHROMIUM", str(fake))
    assert find_pdf_browser() == fake
    monkeypatch.setenv("HW1_CHROMIUM", str(tmp_path / "no-such-chrome"))
    with pytest.raises(PdfToolMissing, match="no-such-chrome"):
        find_pdf_browser()
