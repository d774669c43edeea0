"""docs/configuration.md is generated from the settings class and kept current."""

from __future__ import annotations

from instore import configdoc
from instore.settings import Settings


def test_configuration_doc_is_current() -> None:
    assert configdoc.main(["--check"]) == 0, "run `python -m instore.configdoc`"


def test_every_setting_is_documented_with_a_sentence() -> None:
    text = configdoc.render()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(Settings.model_fields)
    assert all(not line.endswith("|  |") for line in rows), [r for r in rows if r.endswith("|  |")]
