"""Statements as the ``instore ksql`` client sees them, before any goes to the server: a
file's statements, what was typed that is complete, a statement's kind (query, push query or
other), and client-side ``SET``/``UNSET``.

They split and classify with the local engine's parser (``stream_apps.ksqldb.syntax``, imported
when first needed); what it cannot read is left to the server to judge.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def statements_of(path: Path) -> list[str]:
    """The statements of a ``.sql`` file, in order."""
    from stream_apps.ksqldb.syntax import split_statements  # noqa: PLC0415

    return split_statements(path.read_text())


_SET_RE = re.compile(r"^\s*(UN)?SET\s+'([^']+)'\s*(?:=\s*'([^']*)')?\s*;?\s*$", re.I)


def set_property(stmt: str, props: dict[str, Any]) -> bool:
    """Apply ``SET 'name'='value';`` / ``UNSET 'name';`` to ``props`` as ksqlDB's CLI does
    (client-side, for the statements after it); False when ``stmt`` is neither."""
    m = _SET_RE.match(stmt)
    if m is None:
        return False
    if m.group(1):
        props.pop(m.group(2), None)
    else:
        props[m.group(2)] = m.group(3) or ""
    return True


def first_line(stmt: str) -> str:
    """The statement's first line that is not a comment, " ..." when more follow."""
    lines = [line for line in stmt.strip().splitlines()
             if line.strip() and not line.lstrip().startswith("--")]
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else ""


def classify(text: str) -> tuple[bool, bool]:
    """(is a query, is a push query) of one statement."""
    from stream_apps.ksqldb.syntax import Query, parse  # noqa: PLC0415

    try:
        stmts = parse(text)
        first = stmts[0] if len(stmts) == 1 else None
        is_select = isinstance(first, Query)
        push = isinstance(first, Query) and first.select is not None and first.select.emit_changes
    except Exception:  # noqa: BLE001 - what the local parser cannot read (its errors or its gaps): the
        # server judges the statement; only its kind is guessed here
        bare = re.sub(r"--[^\n]*|/\*.*?\*/", " ", text, flags=re.S).strip()
        is_select = bare.upper().startswith("SELECT")
        push = bool(re.search(r"\bEMIT\s+CHANGES\b", bare, re.I))
    return is_select, push


def complete_statements(buffer: str) -> tuple[list[str], str]:
    """The complete statements of what was typed (each ending with its top-level ';') and the
    rest still being typed ("" when it holds only blanks and comments)."""
    from stream_apps.ksqldb.syntax import split_statements, tokenize  # noqa: PLC0415

    try:
        tokens = tokenize(buffer)
    except Exception:  # noqa: BLE001 - an unterminated quote, or a character ksqlDB will refuse
        closed = re.sub(r"'(?:[^']|'')*'|`(?:[^`]|``)*`|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/",
                        "", buffer, flags=re.S)
        if re.search(r"['`\"]|/\*", closed) or not buffer.rstrip().endswith(";"):
            return [], buffer  # a quote or comment still open: the statement goes on
        return [buffer.strip()], ""  # typed to its end: the server judges it
    ends = [t.pos for t in tokens if t.is_op(";")]
    if not ends:
        rest_tokens = [t for t in tokens if t.kind != "EOF"]
        return [], buffer if rest_tokens else ""
    done, rest = buffer[: ends[-1] + 1], buffer[ends[-1] + 1 :]
    if not [t for t in tokenize(rest) if t.kind != "EOF"]:
        rest = ""
    return split_statements(done), rest
