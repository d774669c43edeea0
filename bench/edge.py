"""How well the edge box does on a synthetic scene: speed, position error, identity switches.

Per evaluated frame, the visible ground-truth people (head in view and not hidden) are matched
to the tracks the box would publish (confirmed, seen this frame) in store metres, CLEAR-MOT
style: last frame's pairs are kept while within the gate, the rest by Hungarian assignment.

- position error: distance between a matched person and its track (store metres, so the
  calibration's own error is included);
- id switch: a person continuously in view (gaps up to ``reentry_s``) whose matched track id
  changes; leaving the view and coming back later is a re-entry, not a switch;
- crossing: two visible people coming within ``cross_m`` of each other (counted again only
  after they have been ``cross_release_m`` apart): the moments identities can be confused.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.stats import percentile
from edge.calibration import calibrate_synthetic
from edge.pipeline import EdgeProcessor
from edge.scene import default_scene, visible_mask
from edge.sources import SyntheticSource
from instore.results import time_left


@dataclass
class MotEvaluator:
    gate_m: float = 0.5
    cross_m: float = 1.0
    cross_release_m: float = 1.5
    reentry_frames: int = 30
    errors: list[float] = field(default_factory=list)
    id_switches: int = 0
    crossings: int = 0
    visible: int = 0
    matched: int = 0
    false_tracks: int = 0
    frames: int = 0
    _last_match: dict[int, tuple[int, int]] = field(default_factory=dict)  # gt -> (track, frame)
    _close: set[tuple[int, int]] = field(default_factory=set)

    def add(self, gt_xy: np.ndarray, visible: np.ndarray, tr_ids: list[int], tr_xy: np.ndarray
            ) -> None:
        """One frame: everyone's store position (index = person id) and which of them are in
        the covered zone, and the published tracks (ids, store xy). Tracks are matched to
        everyone, so a track following someone just outside the zone is neither a false track
        nor stolen by a visible neighbour; errors, switches and recall count visible people."""
        self.frames += 1
        f = self.frames
        vis_ids = [int(i) for i in np.nonzero(visible)[0]]
        self.visible += len(vis_ids)
        for ai, a in enumerate(vis_ids):  # crossings among visible people
            for b in vis_ids[ai + 1:]:
                pair = (a, b)
                d = float(np.hypot(*(gt_xy[a] - gt_xy[b])))
                if d < self.cross_m and pair not in self._close:
                    self._close.add(pair)
                    self.crossings += 1
                elif d > self.cross_release_m:
                    self._close.discard(pair)
        pairs: list[tuple[int, int]] = []
        used_g: set[int] = set()
        used_t: set[int] = set()
        tr_index = {tid: k for k, tid in enumerate(tr_ids)}
        for gid in range(len(gt_xy)):  # keep last frame's correspondences
            last = self._last_match.get(gid)
            if last is None or last[1] != f - 1 or last[0] not in tr_index:
                continue
            k = tr_index[last[0]]
            if k in used_t:
                continue
            if float(np.hypot(*(gt_xy[gid] - tr_xy[k]))) <= self.gate_m:
                pairs.append((gid, k))
                used_g.add(gid)
                used_t.add(k)
        rest_g = [i for i in range(len(gt_xy)) if i not in used_g]
        rest_t = [k for k in range(len(tr_ids)) if k not in used_t]
        if rest_g and rest_t:
            c = np.linalg.norm(gt_xy[rest_g][:, None] - tr_xy[rest_t][None], axis=2)
            rows, cols = linear_sum_assignment(c)
            for r, cc in zip(rows, cols, strict=True):
                if c[r, cc] <= self.gate_m:
                    pairs.append((rest_g[r], rest_t[cc]))
        for gid, k in pairs:
            tid = tr_ids[k]
            last = self._last_match.get(gid)
            if visible[gid]:
                if last is not None and last[0] != tid and f - last[1] <= self.reentry_frames:
                    self.id_switches += 1
                self.errors.append(float(np.hypot(*(gt_xy[gid] - tr_xy[k]))))
                self.matched += 1
            self._last_match[gid] = (tid, f)
        matched_t = {k for _, k in pairs}
        for k in range(len(tr_ids)):
            if k in matched_t:
                continue
            nearest = (np.min(np.linalg.norm(gt_xy - tr_xy[k], axis=1)) if len(gt_xy)
                       else np.inf)
            if nearest > self.gate_m:
                self.false_tracks += 1

    def summary(self) -> dict[str, Any]:
        return {
            "median_err_m": percentile(self.errors, 0.50, 4, empty=math.nan),
            "p95_err_m": percentile(self.errors, 0.95, 4, empty=math.nan),
            "id_switches": self.id_switches,
            "crossings": self.crossings,
            "id_switches_per_100_crossings": round(100.0 * self.id_switches / self.crossings, 2)
            if self.crossings else None,
            "recall": round(self.matched / self.visible, 4) if self.visible else None,
            "false_tracks_per_frame": (round(self.false_tracks / self.frames, 4)
                                       if self.frames else None),
            "matched": self.matched,
        }


def pin_one_core() -> int | None:
    """Run this thread (and threads it starts) on one CPU; OpenCV single-threaded."""
    import cv2  # noqa: PLC0415

    cv2.setNumThreads(1)
    try:
        cpus = sorted(os.sched_getaffinity(0))
        cpu = cpus[-1]
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None


def bench_run(resolution: str = "640x480", *, seconds: float = 30.0, people: int = 5,
              seed: int = 1, progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """One synthetic run: pipeline speed without rendering, and accuracy against the truth
    (``progress`` gets a line every 5 s with the frames done and the time left)."""
    scene = default_scene(resolution, people=people, seed=seed, seconds=seconds)
    src = SyntheticSource(scene)
    cal, background = calibrate_synthetic(src)
    proc = EdgeProcessor(cal, background, rate_hz=2.0, nominal_fps=scene.fps)
    ev = MotEvaluator()
    render_s = 0.0
    deliver_s = 0.0
    work_s = 0.0
    renderer = src.renderer
    original_render = renderer.render

    def timed_render(truth: Any) -> np.ndarray:
        nonlocal render_s
        t0 = time.perf_counter()
        img = original_render(truth)
        render_s += time.perf_counter() - t0
        return img

    renderer.render = timed_render  # type: ignore[method-assign]
    frames = src.frames()
    wall0 = time.perf_counter()
    total = max(1, int(seconds * scene.fps))
    next_report = wall0 + 5
    n = 0
    try:
        while True:
            t0 = time.perf_counter()
            r0 = render_s
            frame = next(frames, None)
            if frame is None:
                break
            deliver_s += (time.perf_counter() - t0) - (render_s - r0)
            t1 = time.perf_counter()
            proc.process(frame)
            proc.positions(ts_ms=0)
            work_s += time.perf_counter() - t1
            n += 1
            if time.perf_counter() >= next_report:
                next_report += 5
                progress(f"{resolution}: frame {n:,} of ~{total:,}, {time_left(n, total, wall0)}")
            truth = frame.truth
            assert truth is not None
            clean = renderer.last_depth_m
            vis = visible_mask(scene, renderer, truth,
                               clean if clean is not None else renderer.depth_m(truth))
            live = [tr for tr in proc.tracker.tracks if tr.confirmed and tr.misses == 0]
            tr_xy = (cal.floor_to_store_xy(np.array([tr.xy for tr in live])) if live
                     else np.zeros((0, 2)))
            ev.add(truth.positions, vis, [tr.track_id for tr in live], tr_xy)
    finally:
        src.close()
    wall = time.perf_counter() - wall0
    pipeline_s = work_s + deliver_s
    out = {
        "resolution": resolution,
        "people": people,
        "seconds": seconds,
        "frames": n,
        "fps": round(n / pipeline_s, 1) if pipeline_s else None,
        "fps_detect_track": proc.stats.as_dict()["fps_processing"],
        "render_ms_per_frame": round(1000 * render_s / max(n, 1), 2),
        "wall_s": round(wall, 1),
        "calibration_residual_m": round(cal.residual_m, 4),
        "camera_height_m": round(cal.plane_offset, 3),
        "tracks_started": proc.stats.tracks_started,
    }
    out |= ev.summary()
    return out
