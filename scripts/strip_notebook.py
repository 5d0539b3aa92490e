"""Git clean filter for the tracked notebooks: stdin a notebook's JSON, stdout the same notebook without outputs.

Why: running the notebooks in JupyterLab writes outputs, execution counts and kernel details into
``notebooks/*.ipynb``; with this filter (``make notebook-filter``, run by ``make lab``) git sees them without,
so ``git status`` stays clean and nothing executed is committed. The files on disk keep their outputs.

Kept: the cells' sources, ids and ``tags`` (papermill's ``parameters``), the kernelspec, and the language's name.
Standard library only (git runs it on every ``git status`` of a changed notebook): the JSON is written the way
nbformat writes it (sorted keys, indent 1, a final newline), so an already clean notebook passes byte for byte.
"""

from __future__ import annotations

import json
import sys


def strip(notebook: dict) -> dict:
    """``notebook`` without outputs, execution counts or cell metadata other than tags."""
    for cell in notebook.get("cells", []):
        tags = cell.get("metadata", {}).get("tags")
        cell["metadata"] = {"tags": tags} if tags else {}
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    metadata = notebook.get("metadata", {})
    kept = {"kernelspec": metadata["kernelspec"]} if "kernelspec" in metadata else {}
    if "language_info" in metadata:
        kept["language_info"] = {"name": metadata["language_info"].get("name", "python")}
    notebook["metadata"] = kept
    return notebook


def main() -> None:
    text = sys.stdin.read()
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError:  # not a notebook (a merge conflict, a half-written file): leave it as it is
        sys.stdout.write(text)
        return
    sys.stdout.write(json.dumps(strip(notebook), sort_keys=True, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
