"""Tracks on the floor: a constant-velocity Kalman filter per person, Hungarian assignment.

A detection joins the track whose predicted position is nearest (scipy's
``linear_sum_assignment`` over gated distances); unmatched detections start tentative tracks,
which are confirmed after ``confirm_hits`` hits; a track coasts on its prediction through
``max_misses`` frames without a detection (a crossing, a short occlusion) before it ends.
Each track has a random anonymous id that is never reused and carries no personal data.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

FloatArray = np.ndarray
_H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])


@dataclass(frozen=True)
class TrackerParams:
    gate_m: float = 0.75          # a detection farther than this from a prediction is not it
    confirm_hits: int = 4
    max_misses_s: float = 1.0     # coast this long without a detection, then end
    tentative_misses: int = 2
    accel_std: float = 2.5        # m/s^2, process noise of the constant-velocity model
    meas_std: float = 0.05        # m, detection noise
    max_speed: float = 2.5        # m/s, velocities are clamped to a walking pace
    spawn_clearance_m: float = 0.45  # no new track this close to a live one
    merge_m: float = 0.55         # another track predicted this close to a detection: a merge
    merge_meas_std: float = 0.15  # m, how loosely a track follows a merged blob
    max_merged_s: float = 3.0     # a track hidden in a merged blob lives this long
    coast_keep_s: float = 0.5     # velocity kept unchanged this long while coasting
    exit_misses: int = 1_000_000  # a track missed this often where the camera cannot see ends


@dataclass
class Track:
    track_id: int
    anon_id: str
    x: FloatArray                 # state: x, y, vx, vy (floor metres, m/s)
    p: FloatArray                 # covariance 4x4
    hits: int = 1
    misses: int = 0
    merged: bool = False          # hidden in a blob shared with another track this frame
    solo_misses: int = 0          # frames missed since its last detection, outside any blob
    since_blob: int = 1_000       # frames since it was last hidden in a shared blob
    age: int = 1
    confirmed: bool = False
    uid: str | None = None        # set by a kiosk check-in
    last_emit_s: float = -1e9
    bound_at_s: float | None = None

    @property
    def xy(self) -> FloatArray:
        return self.x[:2]

    @property
    def public_id(self) -> str:
        """What leaves the box: the checked-in uid, else the anonymous id."""
        return self.uid or self.anon_id


def new_anon_id(store_id: str) -> str:
    return f"anon-{store_id}-{secrets.token_hex(6)}"


@dataclass
class Tracker:
    store_id: str = "store"
    params: TrackerParams = field(default_factory=TrackerParams)
    # floor (x, y) -> is it inside the covered zone? (a missed track outside it has left)
    in_view: Callable[[FloatArray], bool] | None = None
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 1
    ended: int = 0

    def _predict(self, dt: float) -> None:
        f = np.array([[1.0, 0, dt, 0], [0, 1.0, 0, dt], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
        q = self.params.accel_std ** 2
        g = np.array([[dt * dt / 2, 0], [0, dt * dt / 2], [dt, 0], [0, dt]])
        qm = g @ g.T * q
        for tr in self.tracks:
            tr.x = f @ tr.x
            tr.p = f @ tr.p @ f.T + qm

    def _update(self, tr: Track, z: FloatArray, meas_std: float | None = None) -> None:
        r = np.eye(2) * (meas_std if meas_std is not None else self.params.meas_std) ** 2
        s = _H @ tr.p @ _H.T + r
        k = tr.p @ _H.T @ np.linalg.inv(s)
        tr.x = tr.x + k @ (z - _H @ tr.x)
        tr.p = (np.eye(4) - k @ _H) @ tr.p
        speed = float(np.hypot(tr.x[2], tr.x[3]))
        if speed > self.params.max_speed:
            tr.x[2:] *= self.params.max_speed / speed

    def step(self, detections: FloatArray, dt: float) -> list[Track]:
        """Advance by ``dt`` seconds with this frame's detections (N, 2); returns live tracks."""
        dets = np.asarray(detections, dtype=np.float64).reshape(-1, 2)
        self._predict(dt)
        for tr in self.tracks:
            tr.merged = False
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        if self.tracks and len(dets):
            pairs = self._assign(dets)
            matched_t = {ti for ti, _ in pairs}
            matched_d = {di for _, di in pairs}
            for ti, di in pairs:
                self._follow(ti, dets[di], matched_t)
        self._age_and_end(matched_t, dt)
        self._spawn(dets, matched_d)
        return list(self.tracks)

    def _assign(self, dets: FloatArray) -> list[tuple[int, int]]:
        """(track, detection) pairs: the nearest predictions within the gate (Hungarian)."""
        pred = np.array([tr.xy for tr in self.tracks])
        cost = np.linalg.norm(pred[:, None, :] - dets[None, :, :], axis=2)
        # confirmed tracks win ties against tentative ones
        bias = np.array([0.0 if tr.confirmed else 0.05 for tr in self.tracks])[:, None]
        big = 1e6
        c = np.where(cost <= self.params.gate_m, cost + bias, big)
        rows, cols = linear_sum_assignment(c)
        return [(int(ti), int(di)) for ti, di in zip(rows, cols, strict=True) if c[ti, di] < big]

    def _follow(self, ti: int, det: FloatArray, matched_t: set[int]) -> None:
        """Track ``ti`` takes its detection, or shares it with the tracks merged into it."""
        pr = self.params
        tr = self.tracks[ti]
        # a confirmed track left without a detection whose prediction is also on this
        # one: two people in one blob. The hidden one is not gone, and the blob's
        # position is neither person's.
        # (a track that had been coasting on its own before, e.g. someone who left
        # the view, does not join a blob: only one lost just now or already in it)
        others = [oj for oj, o in enumerate(self.tracks)
                  if oj != ti and oj not in matched_t and o.confirmed
                  and (o.solo_misses <= 2 or o.since_blob <= 3)
                  and float(np.hypot(*(o.xy - det))) < pr.merge_m]
        if others and tr.confirmed:
            # the blob is the group: move the group's centre onto it, keeping each
            # member's offset within the group (so who is on which side survives)
            group = [tr] + [self.tracks[oj] for oj in others]
            shift = det - np.mean([g.xy for g in group], axis=0)
            for g in group:
                self._update(g, g.xy + shift, pr.merge_meas_std)
            for oj in others:
                self.tracks[oj].merged = True
        else:
            self._update(tr, det)
        tr.hits += 1
        tr.misses = 0
        if tr.hits >= pr.confirm_hits:
            tr.confirmed = True

    def _age_and_end(self, matched_t: set[int], dt: float) -> None:
        """Count a frame on every track, a miss on the unmatched ones; end those gone."""
        pr = self.params
        max_misses = max(1, int(round(pr.max_misses_s / max(dt, 1e-3))))
        max_merged = max(1, int(round(pr.max_merged_s / max(dt, 1e-3))))
        keep_frames = int(round(pr.coast_keep_s / max(dt, 1e-3)))
        alive: list[Track] = []
        for ti, tr in enumerate(self.tracks):
            tr.age += 1
            if ti not in matched_t:
                tr.misses += 1
                tr.since_blob = 0 if tr.merged else tr.since_blob + 1
                if tr.since_blob > 3:  # a dropped frame inside a blob is not "alone"
                    tr.solo_misses += 1
                if tr.misses > keep_frames and not tr.merged:
                    tr.x[2:] *= 0.9  # coasting a while: slow down rather than run off
            else:
                tr.solo_misses = 0
                tr.since_blob = 1_000
            if self._gone(tr, max_misses, max_merged):
                self.ended += 1
                continue
            alive.append(tr)
        self.tracks = alive

    def _gone(self, tr: Track, max_misses: int, max_merged: int) -> bool:
        pr = self.params
        if not tr.confirmed:
            return tr.misses > pr.tentative_misses
        # hidden in a blob it may wait longer than alone
        gone = tr.solo_misses > max_misses or tr.misses > max_merged
        if (not tr.merged and tr.misses >= pr.exit_misses and self.in_view is not None
                and not self.in_view(tr.xy)):
            gone = True  # walked out of the camera's view
        return gone

    def _spawn(self, dets: FloatArray, matched_d: set[int]) -> None:
        """A tentative track for each unmatched detection not too close to a live track."""
        pr = self.params
        for di in range(len(dets)):
            if di in matched_d:
                continue
            if self.tracks:
                near = min(float(np.hypot(*(tr.xy - dets[di]))) for tr in self.tracks)
                if near < pr.spawn_clearance_m:
                    continue
            p0 = np.diag([pr.meas_std ** 2, pr.meas_std ** 2, 1.0, 1.0])
            x0 = np.array([dets[di, 0], dets[di, 1], 0.0, 0.0])
            self.tracks.append(Track(self._next_id, new_anon_id(self.store_id), x0, p0))
            self._next_id += 1

    def confirmed(self) -> list[Track]:
        return [tr for tr in self.tracks if tr.confirmed]
