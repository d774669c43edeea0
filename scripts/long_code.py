"""List the functions over 80 lines and the files over 500 lines that do not say why.

    python scripts/long_code.py [PATH ...]     (default: every package, bench and scripts)

A function's length runs from its ``def`` (decorators excluded) to its last line. A file over the
limit passes when its module docstring states the reason in a sentence containing "one file" (for
example "This stays one file: ..."). Exits 1 when anything is listed, so it can gate a check.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FUNCTION_LIMIT = 80
FILE_LIMIT = 500
DEFAULT_ROOTS = ("instore", "stream_apps", "mobile_push", "api", "edge", "producers", "bench", "scripts")
REASON_MARK = "one file"


def long_functions(tree: ast.AST) -> list[tuple[int, str, int]]:
    """(line, qualified name, length) of each function longer than the limit."""
    found: list[tuple[int, str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                length = (child.end_lineno or child.lineno) - child.lineno + 1
                if length > FUNCTION_LIMIT:
                    found.append((child.lineno, name, length))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def report(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    lines = [f"{path}:{line}: {name} is {length} lines" for line, name, length in long_functions(tree)]
    count = len(text.splitlines())
    docstring = ast.get_docstring(tree) or ""
    if count > FILE_LIMIT and REASON_MARK not in docstring.lower():
        lines.append(f"{path}: {count} lines, no reason in its docstring")
    return lines


def main(argv: list[str]) -> int:
    roots = [Path(arg) for arg in argv] or [Path(root) for root in DEFAULT_ROOTS]
    found: list[str] = []
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            found.extend(report(path))
    for line in found:
        print(line)  # noqa: T201 - a command-line report
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
