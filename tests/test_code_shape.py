"""The shape of the code: no function in ``hw1lib`` takes more than ``MAX_PARAMETERS`` positional parameters.

Why: a call of eleven positional arguments (the engine's ``evaluate`` once took them) cannot be read or changed
safely; a function that needs more takes the config or one object that bundles them (``engine.Training``), and
options go after ``*``. Keyword-only parameters are not counted; ``self``/``cls`` of a method are not either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hw1lib

#: the most positional-or-keyword parameters a function in hw1lib may take (torchvision's references: 4 to 6)
MAX_PARAMETERS = 6
PACKAGE = Path(hw1lib.__file__).parent


def positional_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> int:
    """How many parameters can be passed by position, a method's bound ``self``/``cls`` left out."""
    names = [a.arg for a in node.args.posonlyargs + node.args.args]
    if in_class and names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names)


def long_signatures(root: Path = PACKAGE, limit: int = MAX_PARAMETERS) -> list[str]:
    """``path:line name (n)`` for every function under ``root`` with more than ``limit`` positional parameters."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        methods = {
            id(item)
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef)
            for item in cls.body
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
        }
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = positional_parameters(node, id(node) in methods)
                if count > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({count})")
    return found


def test_no_function_in_hw1lib_takes_more_than_six_positional_parameters():
    assert long_signatures() == [], (
        f"more than {MAX_PARAMETERS} positional parameters: pass the config or one object, or make options "
        "keyword-only (after *)"
    )


def test_the_check_counts_what_it_says(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "def seven(a, b, c, d, e, f, g): ...\n"
        "def options(a, b, c, d, e, f, *, g=1, h=2): ...\n"
        "class C:\n"
        "    def method(self, a, b, c, d, e, f): ...\n"
        "    def nested(self):\n"
        "        def inner(self, a, b, c, d, e, f): ...\n"
    )
    assert long_signatures(tmp_path / "pkg") == ["pkg/m.py:1 seven (7)", "pkg/m.py:6 inner (7)"]
