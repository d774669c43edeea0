"""Edge pipeline without a broker: detection on the synthetic scene, bad input, the .bag round
trip through pyrealsense2's recorder and playback, position records."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge.calibration import calibrate_synthetic
from edge.pipeline import EdgeProcessor, run_pipeline
from edge.scene import default_scene
from edge.sources import Faults, RealSenseSource, SourceError, SyntheticSource
from instore.records import CustomerLocation
from instore.settings import Settings

SECONDS = 3.0


def _scene(seed: int = 4, seconds: float = SECONDS):
    return default_scene("640x480", people=5, seed=seed, seconds=seconds)


def _tracks_per_frame(proc: EdgeProcessor, frames) -> list[list[tuple[int, float, float]]]:
    out = []
    for frame in frames:
        proc.process(frame)
        out.append([(tr.track_id, round(float(tr.xy[0]), 6), round(float(tr.xy[1]), 6))
                    for tr in proc.tracker.tracks if tr.confirmed])
    return out


def test_synthetic_frames_come_through_pyrealsense2_with_the_scene_intrinsics() -> None:
    src = SyntheticSource(_scene(seconds=0.2))
    try:
        frames = [f for f in src.frames() if f is not None]
    finally:
        src.close()
    assert len(frames) == 6
    assert frames[0].depth.dtype == np.uint16 and frames[0].depth.shape == (480, 640)
    assert frames[0].depth_scale == pytest.approx(0.001)
    assert frames[1].ts_ms > frames[0].ts_ms
    assert 0.005 < np.mean(frames[0].depth == 0) < 0.2  # holes, as a stereo camera has


def test_finds_and_places_everyone_in_view() -> None:
    scene = _scene()
    src = SyntheticSource(scene)
    cal, bg = calibrate_synthetic(src)
    proc = EdgeProcessor(cal, bg)
    errors = []
    try:
        for frame in src.frames():
            proc.process(frame)
            if frame is not None and frame.index == scene.n_frames - 1:
                truth = frame.truth
                est = cal.floor_to_store_xy(np.array([t.xy for t in proc.tracker.confirmed()]))
                for p in truth.positions:
                    errors.append(np.min(np.hypot(*(est - p).T)))
    finally:
        src.close()
    assert len(proc.tracker.confirmed()) == 5
    assert max(errors) < 0.25


def test_bad_input_is_logged_counted_and_the_pipeline_continues(caplog) -> None:
    faults = Faults(drop={10, 11, 12}, zero={20, 21}, wrong_resolution={30, 31, 32, 33})
    src = SyntheticSource(_scene(), faults=faults)
    seen = []
    with caplog.at_level("WARNING", logger="edge.pipeline"):
        stats = run_pipeline(Settings(_env_file=None), src, threading.Event(), produce=False,
                             checkins=False,
                             on_frame=lambda f, p: seen.append(len(p.tracker.confirmed())))
    assert stats.missing == 3
    assert stats.empty == 2
    assert stats.wrong_resolution == 4
    assert stats.errors == 0
    assert stats.processed == len(seen) - 9
    assert seen[-1] == 5  # everyone still tracked after the bad frames
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "missing" in messages and "empty" in messages and "wrong resolution" in messages


def test_bag_round_trip_gives_the_same_tracks(tmp_path: Path) -> None:
    """Record with rs.recorder, play back through the live path (rs.pipeline from a file)."""
    scene = _scene(seed=9)
    bag = tmp_path / "scene.db3"
    cal_src = SyntheticSource(scene)
    cal, bg = calibrate_synthetic(cal_src)
    cal_src.close()

    rec = SyntheticSource(scene, record_to=bag)
    direct = _tracks_per_frame(EdgeProcessor(cal, bg), rec.frames())
    rec.close()
    del rec
    assert bag.exists() and bag.stat().st_size > 100_000

    play = RealSenseSource(bag, real_time=False)
    try:
        assert play.kind == "bag"
        assert play.intrinsics == scene.intrinsics
        played = _tracks_per_frame(EdgeProcessor(cal, bg), play.frames())
    finally:
        play.close()
    assert len(played) == len(direct) == scene.n_frames
    assert played == direct
    assert len(played[-1]) == 5


def test_missing_recording_and_camera_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no recording"):
        RealSenseSource(tmp_path / "nope.db3")
    with pytest.raises(SourceError, match="no RealSense camera"):
        RealSenseSource(None)


def test_position_records_follow_the_contract_and_the_rate() -> None:
    scene = _scene(seconds=2.0)
    src = SyntheticSource(scene)
    cal, bg = calibrate_synthetic(src)
    proc = EdgeProcessor(cal, bg, rate_hz=2.0)
    records: list[CustomerLocation] = []
    try:
        for frame in src.frames():
            proc.process(frame)
            records += proc.positions(ts_ms=1_767_225_600_000)
    finally:
        src.close()
    assert records
    per_track: dict[str, int] = {}
    for r in records:
        assert r.source == "camera" and r.store_id == scene.store_id and r.country == "GB"
        assert r.uid.startswith(f"anon-{scene.store_id}-")
        assert 0.1 <= (r.accuracy_m or 0) < 1.0
        x, y = scene.anchor.to_store(r.latitude, r.longitude)
        assert 10.0 < x < 14.0 and 18.5 < y < 24.0
        per_track[r.uid] = per_track.get(r.uid, 0) + 1
    # ~2 s of confirmed tracking at 2 Hz: at most 4-5 positions each
    assert all(1 <= n <= 5 for n in per_track.values())
    CustomerLocation.model_validate_json(records[0].to_json())
