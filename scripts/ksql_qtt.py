"""Run ksqlDB's query-validation-test files (QTT, from a ksqlDB source checkout:
``ksqldb-functional-tests/src/test/resources/query-validation-tests/*.json``) against the local
engine and print how many cases agree. The files stay where they are: this repository carries
its own cases in ``tests/ksql_cases``; this measures the supported subset against ksqlDB's.

    python scripts/ksql_qtt.py path/to/query-validation-tests/joins.json [-v] [--json]

A case is in the subset when its statements use JSON values (``{FORMAT}`` cases run with JSON)
and KAFKA/JSON/NONE keys; others are counted as skipped. A case agrees when every expected
output topic holds exactly the expected records (key, value, timestamp where given, window) in
order, or, for an ``expectedException`` case, when one of its statements is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_apps.ksqldb.testing import qtt_formats, run_qtt_case


def main(
    files: list[Path],
    verbose: bool = typer.Option(False, "-v", help="print each failing case and why"),
    as_json: bool = typer.Option(False, "--json", help="one JSON summary line per file"),
    only: str = typer.Option("", help="run only cases whose name contains this"),
) -> None:
    """Run ksqlDB QTT files against the local engine; print agreement per file."""
    totals = {"pass": 0, "fail": 0, "skip": 0}
    for path in files:
        try:
            cases = json.loads(path.read_text())["tests"]
        except (OSError, ValueError, KeyError) as exc:
            typer.echo(f"{path.name}: skipped, not a query-validation-test file ({exc})", err=True)
            continue
        counts = {"pass": 0, "fail": 0, "skip": 0}
        for case in cases:
            if only and only not in case["name"]:
                continue
            for fmt in qtt_formats(case):
                status, detail = run_qtt_case(case, fmt)
                counts[status] += 1
                if verbose and status == "fail":
                    typer.echo(f"FAIL {path.stem}: {case['name']}\n  {detail}")
        for k in totals:
            totals[k] += counts[k]
        ran = counts["pass"] + counts["fail"]
        if as_json:
            typer.echo(json.dumps({"file": path.name, **counts}))
        else:
            pct = 100 * counts["pass"] / ran if ran else 0.0
            typer.echo(f"{path.name}: {counts['pass']}/{ran} agree ({pct:.0f} %), "
                       f"{counts['skip']} outside the subset")
    ran = totals["pass"] + totals["fail"]
    if len(files) > 1 and not as_json:
        pct = 100 * totals["pass"] / ran if ran else 0.0
        typer.echo(f"all: {totals['pass']}/{ran} agree ({pct:.0f} %), {totals['skip']} skipped")


if __name__ == "__main__":
    typer.run(main)
