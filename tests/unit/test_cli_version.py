"""`instore --version`: the package's version and the embedded Kafka's, exit 0."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from instore.cli import app
from instore.embedded.kafka import KAFKA_VERSION


def test_version_prints_both_versions() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"instore {version('instore')} (embedded Apache Kafka {KAFKA_VERSION})"


def test_no_arguments_still_shows_the_help() -> None:
    res = CliRunner().invoke(app, [])
    assert "Usage" in res.output and "topics" in res.output


def test_help_has_no_type_noise() -> None:
    """Flags read as flags: no "<bool>" placeholder beside them in --help (values keep theirs,
    e.g. "<int>")."""
    for args in (["--help"], ["bench", "proximity", "--help"], ["up", "--help"]):
        res = CliRunner().invoke(app, args, terminal_width=120)
        assert res.exit_code == 0, res.output
        assert "<bool>" not in res.output, res.output
        assert "--help" in res.output


def test_choices_show_their_values_in_help() -> None:
    """Issue 17: a choice is an enum, and --help lists its values; a wrong one is a one-line
    usage error, not a traceback."""
    for args, values in (
        (["edge", "run", "--help"], ("synthetic", "bag", "live", "auto", "walk", "checkin")),
        (["cloud", "plan", "--help"], ("basic", "standard", "dedicated", "AWS", "GCP", "AZURE")),
    ):
        res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
        assert all(v in res.output for v in values), res.output
    res = CliRunner().invoke(app, ["edge", "run", "--source", "webcam"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "webcam" in res.output
