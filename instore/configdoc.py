"""docs/configuration.md, generated from the settings class: every environment variable, its
type, its default and what it does (the comment above the field in instore/settings.py).

    python -m instore.configdoc           # rewrite docs/configuration.md
    python -m instore.configdoc --check   # exit 1 when it is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from instore import settings as settings_module
from instore.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"
HEADER = """# Configuration

Every setting is an environment variable (or a line in `.env` in the working directory), read
once at start by `instore/settings.py`; no other module reads the environment. Secrets print
as `**********`. In production (`INSTORE_ENV=production`) the development keys and secrets are
refused: see [security.md](security.md).

This page is generated from the settings class: `python -m instore.configdoc` rewrites it, and
a test fails when it is stale.

| Variable | Type | Default | What it does |
|---|---|---|---|
"""


def _comments(lines: list[str], lineno: int) -> str:
    """The comment block right above line ``lineno`` (1-based), as one sentence or more."""
    out: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        out.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    return " ".join(out)


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        return "(computed)"
    value: Any = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    source = Path(settings_module.__file__).read_text()
    lines = source.splitlines()
    cls = next(n for n in ast.parse(source).body
               if isinstance(n, ast.ClassDef) and n.name == "Settings")
    rows = []
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        field = Settings.model_fields.get(name)
        if field is None:
            continue
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        env = alias or name.upper()
        kind = ast.get_source_segment(source, node.annotation) or ""
        rows.append(f"| `{env}` | `{_cell(kind)}` | {_cell(_default(name))} | "
                    f"{_cell(_comments(lines, node.lineno))} |")
    return HEADER + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            sys.stderr.write("docs/configuration.md is stale: run `python -m instore.configdoc`\n")
            return 1
        return 0
    DOC.write_text(text)
    n = len(text.splitlines()) - len(HEADER.splitlines())
    sys.stderr.write(f"wrote {DOC.relative_to(ROOT)} ({n} settings)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
