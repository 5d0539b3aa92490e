"""Export an executed notebook to a self-contained HTML file, and print that HTML to PDF offline.

HTML comes from nbconvert's ``lab`` template with every CDN script removed (require.js, MathJax, Mermaid,
widgets), images inlined as base64 and a small print stylesheet for A4. PDF comes from a headless
Chromium printing that HTML (Debian's ``chromium-headless-shell`` package, ~300 MB), because nbconvert's
LaTeX route needs ~600 MB of TeX and its webpdf route downloads a browser at run time.

What this is not: a command line. The report command calls these functions and treats
:class:`PdfToolMissing` as "HTML only". Math in Markdown cells stays as raw TeX (``$x^2$``): MathJax
would have to come from the network.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from hw1lib.files import umask, write_text

#: Names looked up on PATH, best first: the headless shell is the smallest and made for printing.
BROWSER_NAMES = (
    "chromium-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
#: Where Debian, Ubuntu's snap and Google install the binaries, for when they are not on PATH.
BROWSER_PATHS = (
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/lib/chromium/chromium",
    "/snap/bin/chromium",
    "/opt/google/chrome/chrome",
)
INSTALL_HINT = (
    "install a headless Chromium: `sudo apt-get install --no-install-recommends chromium-headless-shell` "
    "on Debian/Ubuntu (or run scripts/install_pdf_tools.sh), or set HW1_CHROMIUM to a Chrome/Chromium binary"
)

# Print stylesheet: A4 pages, figures shrunk to the text width, no figure or table cut across pages.
_PRINT_CSS = """
<style type="text/css">
@page { size: A4; margin: 15mm 12mm; }
img, svg { max-width: 100% !important; height: auto !important; }
@media print {
  body { padding: 0 !important; }
  .jp-Cell { padding: 2px 0; }
  .jp-OutputArea-output, .jp-RenderedImage, img, svg, table, figure, pre {
    break-inside: avoid; page-break-inside: avoid;
  }
  h1, h2, h3, h4 { break-after: avoid; page-break-after: avoid; }
  pre { white-space: pre-wrap; overflow-wrap: anywhere; }
  /* wide tables shrink instead of scrolling: a scrollbar cuts columns off on paper */
  .jp-OutputArea-output, .jp-RenderedHTMLCommon { overflow: visible !important; }
  .jp-RenderedHTMLCommon table { font-size: 0.75em; }
  .jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { padding: 0.2em 0.4em; }
}
</style>
"""

# The lab template without anything that loads from the network, plus the print stylesheet at the end
# of <head> so that it wins over the template's own CSS.
_OFFLINE_TEMPLATE = (
    "{%- extends 'index.html.j2' -%}\n"
    "{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}\n"
    "{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}\n"
    "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}\n"
    "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n"
    "{%- block html_head_css -%}" + _PRINT_CSS + "{%- endblock html_head_css -%}\n"
)
# A script, stylesheet or module import that would be fetched from the network when the page opens.
_REMOTE_RESOURCE = re.compile(
    r"""<script[^>]*\bsrc=["']?(?:https?:)?//"""
    r"""|<link[^>]*\bhref=["']?(?:https?:)?//"""
    r"""|import\(\s*["']https?://""",
    re.IGNORECASE,
)


class PdfToolMissing(RuntimeError):
    """No browser to print PDF with; the message says what to install. HTML export still works."""


class PdfExportError(RuntimeError):
    """The browser ran but produced no PDF; the message names the browser and its stderr tail."""


def export_html(notebook: Path, out_html: Path, hide_code: bool = True) -> Path:
    """Write an executed notebook as one self-contained HTML file that needs no network to view or print.

    Args:
        notebook: the executed ``.ipynb`` (outputs are exported as they are; nothing is run).
        out_html: where to write the HTML; parent folders are created.
        hide_code: drop code cells' source and all In/Out prompts (the report); ``False`` keeps them
            (the executed analysis notebooks).

    Returns:
        ``out_html``.
    """
    from nbconvert import HTMLExporter  # imported here: the GPU check runs the package without nbconvert

    notebook, out_html = Path(notebook), Path(out_html)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook to export not found: {notebook}")
    exporter = HTMLExporter(
        template_name="lab",
        raw_template=_OFFLINE_TEMPLATE,
        embed_images=True,  # Markdown images too, not only outputs, become data: URIs
        exclude_input=hide_code,
        exclude_input_prompt=hide_code,
        exclude_output_prompt=hide_code,
    )
    body, _ = exporter.from_filename(str(notebook))
    remote = _REMOTE_RESOURCE.search(body)
    if remote:  # a newer nbconvert template added a CDN resource this module does not know about yet
        snippet = body[remote.start() : remote.start() + 120]
        raise RuntimeError(f"exported HTML of {notebook} still loads from the network: {snippet!r}")
    return write_text(out_html, body)  # atomic: an earlier report stays whole if this fails


def find_pdf_browser() -> Path | None:
    """Find a Chrome/Chromium able to print to PDF headless.

    ``HW1_CHROMIUM`` (a path or a name on PATH) overrides the search; then the names in
    :data:`BROWSER_NAMES` on PATH, then the install locations in :data:`BROWSER_PATHS`.

    Returns:
        The browser's path, or ``None`` when there is none.

    Raises:
        PdfToolMissing: ``HW1_CHROMIUM`` is set but names no executable.
    """
    override = os.environ.get("HW1_CHROMIUM", "").strip()
    if override:
        found = shutil.which(os.path.expanduser(override))
        if not found:
            raise PdfToolMissing(f"HW1_CHROMIUM={override!r} is not an executable file; fix it or unset it")
        return Path(found)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    for path in BROWSER_PATHS:
        if os.access(path, os.X_OK):
            return Path(path)
    return None


def html_to_pdf(html: Path, pdf: Path, browser: Path | None = None, timeout: float = 120) -> Path:
    """Print an HTML file to PDF with a headless Chromium, replacing ``pdf`` only once a PDF exists.

    The browser writes into a temporary file beside ``pdf``, which is renamed into place; on any failure
    ``pdf`` is left as it was (an earlier good PDF stays).

    Args:
        html: the HTML file (self-contained, see :func:`export_html`).
        pdf: where to write the PDF; parent folders are created.
        browser: the browser binary; found by :func:`find_pdf_browser` when ``None``.
        timeout: seconds to wait for the browser before killing it.

    Returns:
        ``pdf``.

    Raises:
        PdfToolMissing: no browser found; the message says what to install.
        PdfExportError: the browser failed, timed out, or wrote no PDF.
    """
    html, pdf = Path(html).resolve(), Path(pdf)
    if not html.is_file():
        raise FileNotFoundError(f"HTML to print not found: {html}")
    browser = browser or find_pdf_browser()
    if browser is None:
        raise PdfToolMissing(f"no Chrome/Chromium found to print {html.name} to PDF; {INSTALL_HINT}")
    pdf.parent.mkdir(parents=True, exist_ok=True)
    # The staging folder sits beside ``pdf`` so that the final rename stays on one file system (atomic).
    with (
        tempfile.TemporaryDirectory(prefix="hw1-chromium-") as profile,
        tempfile.TemporaryDirectory(prefix=f".{pdf.name}.", dir=pdf.parent) as staging,
    ):
        part = Path(staging) / pdf.name
        command = _print_command(Path(browser), html, part, Path(profile))
        returncode, output = _run_killing_group(command, timeout, browser)
        if returncode != 0 or not _looks_like_pdf(part):
            found = f"{part.stat().st_size} bytes, not a PDF" if part.exists() else "no file"
            raise PdfExportError(
                f"{browser} did not print {html} to PDF (exit code {returncode}, {found}).\n"
                f"Command: {' '.join(command)}\nLast lines of its output:\n{_tail(output)}"
            )
        os.chmod(part, 0o666 & ~umask())  # the browser's file, made like any other the project writes
        os.replace(part, pdf)
    return pdf


def _print_command(browser: Path, html: Path, out: Path, profile: Path) -> list[str]:
    """The headless print command: no sandbox (root in containers), no GPU, nothing from the network."""
    return [
        str(browser),
        "--headless",  # needed by full chromium/chrome; the headless shell ignores it
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={profile}",  # a fresh profile: no lock clash with a running browser
        "--no-pdf-header-footer",
        "--print-to-pdf-no-header",  # the same switch before Chrome 111; unknown switches are ignored
        f"--print-to-pdf={out}",
        html.as_uri(),
    ]


def _run_killing_group(command: list[str], timeout: float, browser: Path) -> tuple[int, str]:
    """Run ``command``; on timeout kill its whole process group (Debian's launcher is a shell wrapper
    whose chromium child would otherwise outlive it and keep the pipes open)."""
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # chromium logs to stderr; one stream keeps the order
        text=True,
        errors="replace",
        start_new_session=True,
    ) as proc:
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            raise PdfExportError(
                f"{browser} did not finish printing within {timeout:g} s and was killed.\n"
                f"Command: {' '.join(command)}\nLast lines of its output:\n{_tail(output)}"
            ) from None
    return proc.returncode, output


def _looks_like_pdf(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb") as f:
        return f.read(5) == b"%PDF-"


def _tail(text: str, lines: int = 15) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(empty)"
