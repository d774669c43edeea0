"""`instore ksql shell`: the interactive loop. Statements end with ';' and may span lines; each
complete one runs as `instore ksql query` runs it; an error is printed and the shell goes on;
readline keeps a history in the data dir on an interactive terminal."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape

from instore.commands.ksql.client import KsqlCommandError, KsqlUnavailable
from instore.commands.ksql.output import console
from instore.commands.ksql.results import run_statement
from instore.commands.ksql.statements import complete_statements, first_line, set_property
from instore.settings import Settings

SHELL_HELP = """Statements end with ';' and may span lines. A SELECT with EMIT CHANGES streams rows
until LIMIT or Ctrl-C; Ctrl-C at the prompt drops the statement being typed.
SET 'auto.offset.reset'='earliest'; applies to the statements after it (UNSET to drop it).
exit, quit or Ctrl-D leaves."""


def run_shell(client: Any, settings: Settings, version: str, props: dict[str, Any]) -> None:
    """Read statements from stdin until exit, quit or end of input, running each complete one
    with ``props`` (which SET/UNSET change)."""
    interactive = sys.stdin.isatty()
    history = _history(settings) if interactive else None
    if interactive:
        console.print(f"ksqlDB {version} at {settings.ksqldb_address}", highlight=False)
        console.print(SHELL_HELP, markup=False, highlight=False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _read_eval_print(client, props, interactive)
    finally:
        if history is not None:
            _save_history(history)


def _read_eval_print(client: Any, props: dict[str, Any], interactive: bool) -> None:
    buffer = ""
    while True:
        prompt = ("ksql> " if not buffer else "   -> ") if interactive else ""
        try:
            line = input(prompt)
        except EOFError:
            break
        except KeyboardInterrupt:  # drop what was being typed
            buffer = ""
            console.print()
            continue
        if not buffer and line.strip().rstrip(";").strip().lower() in ("exit", "quit"):
            break
        if not buffer and line.strip().lower() in ("help", "help;"):
            console.print(SHELL_HELP, markup=False, highlight=False)
            continue
        statements, buffer = complete_statements(buffer + line + "\n")
        for stmt in statements:
            _shell_run(client, stmt, props)
    if buffer.strip():  # input ended inside a statement
        console.print("[yellow]not run[/] (no closing ';'): " + first_line(buffer),
                      highlight=False)


def _shell_run(client: Any, stmt: str, props: dict[str, Any]) -> None:
    """One statement of the shell: errors are printed and the shell goes on."""
    if set_property(stmt, props):
        console.print(f"properties: {json.dumps(props)}", markup=False, highlight=False)
        return
    try:
        run_statement(client, stmt, props)
    except KsqlCommandError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    except OSError as exc:  # the endpoint went away: say so, keep the shell
        msg = str(exc) if isinstance(exc, KsqlUnavailable) else f"ksqlDB: {exc}"
        console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)
    except KeyboardInterrupt:
        console.print("[cyan]cancelled[/]")


def _history(settings: Settings) -> Path | None:
    """Readline with a history file in the data dir (an interactive terminal only)."""
    try:
        import readline  # noqa: PLC0415
    except ImportError:  # a Python without readline: the shell works without history
        return None
    from instore.embedded import resolve_data_dir  # noqa: PLC0415

    path = resolve_data_dir(settings, None) / "ksql_history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError as exc:
        console.print(f"[yellow]no history[/] ({exc})")
        return None
    readline.set_history_length(1000)
    return path


def _save_history(path: Path) -> None:
    import readline  # noqa: PLC0415

    try:
        readline.write_history_file(path)
    except OSError as exc:
        console.print(f"[yellow]history not saved[/] ({exc})")
