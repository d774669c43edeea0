"""`instore edge calibrate` / `view` / `record` from the command line (synthetic source)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
from typer.testing import CliRunner

from instore.cli import app

runner = CliRunner()


def test_calibrate_then_view_writes_an_annotated_depth_png(tmp_path: Path) -> None:
    cal = tmp_path / "edge" / "calibration.json"
    res = runner.invoke(app, ["edge", "calibrate", "--out", str(cal), "--store-id", "s-7",
                              "--frames", "3"])
    assert res.exit_code == 0, res.output
    saved = json.loads(cal.read_text())
    assert saved["store_id"] == "s-7" and abs(saved["plane_offset"] - 4.0) < 0.02
    assert (tmp_path / "edge" / saved["background_file"]).exists()
    png = tmp_path / "view.png"
    res = runner.invoke(app, ["edge", "view", "--calibration", str(cal), "--out", str(png),
                              "--frames", "20"])
    assert res.exit_code == 0, res.output
    img = cv2.imread(str(png))
    assert img is not None and img.shape == (480, 640, 3)


def test_record_refuses_a_bag_name_and_a_missing_recording_is_explained(tmp_path: Path) -> None:
    res = runner.invoke(app, ["edge", "record", str(tmp_path / "x.bag"), "--seconds", "0.2"])
    assert res.exit_code == 1 and ".db3" in res.output
    res = runner.invoke(app, ["edge", "view", "--source", "bag", str(tmp_path / "none.db3")])
    assert res.exit_code == 1 and "no recording" in res.output
