"""The [edge] and [cloud] extras: their commands say how to install what is missing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from instore import extras
from instore.cli import app


def test_everything_installed_here() -> None:
    assert extras.missing("edge") is None
    assert extras.missing("cloud") is None


@pytest.mark.parametrize(("extra", "args", "module"), [
    ("edge", ["edge", "record", "out.db3"], "cv2"),
    ("cloud", ["cloud", "env"], "hcl2"),
])
def test_a_missing_extra_is_one_sentence(monkeypatch: pytest.MonkeyPatch, extra: str,
                                         args: list[str], module: str) -> None:
    real = extras.find_spec
    monkeypatch.setattr(extras, "find_spec", lambda name: None if name == module else real(name))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert f"this needs the [{extra}] extra ({module} not installed)" in text
    assert f"pip install 'instore[{extra}]'" in text
