"""`--json` means the same on every command: the last line of standard output is one JSON
object (commands that stream, like `ksql query`, print their rows as JSON lines before it)."""

from __future__ import annotations

from typing import Any

from typer.main import get_command

from instore.cli import app


def commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    subs = getattr(cmd, "commands", None)
    if subs:
        return [c for name, sub in subs.items() for c in commands(sub, (*path, name))]
    return [(" ".join(path), cmd)]


def test_every_json_flag_promises_one_json_object_last() -> None:
    with_json = {}
    for name, cmd in commands(get_command(app)):
        for param in cmd.params:
            if "--json" in getattr(param, "opts", []):
                with_json[name] = param.help or ""
    assert len(with_json) >= 15  # status, archive, report, demo, the benchmarks, ksql, ...
    for name, text in with_json.items():
        assert "one JSON object" in text and "last line" in text.lower(), (name, text)
