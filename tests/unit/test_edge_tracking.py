"""Edge tracker on crossing paths and occlusions; kiosk check-in binding."""

from __future__ import annotations

import re

import numpy as np

from edge.calibration import Calibration
from edge.checkin import KioskBinder
from edge.scene import RESOLUTIONS
from edge.tracking import Tracker
from instore.records import KioskInteraction

DT = 1 / 30


def _walk(a: tuple[float, float], b: tuple[float, float], n: int) -> np.ndarray:
    return np.linspace(a, b, n)


def _detections(people: np.ndarray, merge_m: float, rng: np.random.Generator) -> np.ndarray:
    """Noisy detections; people closer than ``merge_m`` give ONE detection between them."""
    pts = people + rng.normal(0, 0.03, people.shape)
    out: list[np.ndarray] = []
    used: set[int] = set()
    for i in range(len(pts)):
        if i in used:
            continue
        for j in range(i + 1, len(pts)):
            if j not in used and np.hypot(*(people[i] - people[j])) < merge_m:
                out.append((pts[i] + pts[j]) / 2)
                used |= {i, j}
                break
        else:
            out.append(pts[i])
            used.add(i)
    return np.array(out).reshape(-1, 2)


def _ids_by_person(tracker: Tracker, people: np.ndarray) -> list[int | None]:
    out: list[int | None] = []
    for p in people:
        best = None
        best_d = 0.5
        for tr in tracker.confirmed():
            d = float(np.hypot(*(tr.xy - p)))
            if d < best_d:
                best, best_d = tr.track_id, d
        out.append(best)
    return out


def test_crossing_paths_keep_their_ids() -> None:
    """Two people cross at random angles; they pass 0.45 m apart (one steps aside), the
    detector sees ONE blob while they are closer than 0.55 m and misses 5 % of detections."""
    switches = 0
    crossings = 0
    for trial in range(300):
        if trial % 100 == 0:
            rng = np.random.default_rng(trial // 100 + 1)
        angle = rng.uniform(0.4, np.pi - 0.4)
        n = 100  # 3.3 s at 30 fps, ~1.2 m/s
        a = _walk((-2.0, 0.0), (2.0, 0.0), n)
        lead = rng.uniform(-0.4, 0.4)
        b = _walk(((-2 + lead) * np.cos(angle), (-2 + lead) * np.sin(angle)),
                  ((2 + lead) * np.cos(angle), (2 + lead) * np.sin(angle)), n)
        tracker = Tracker(f"s{trial}")
        first: list[int | None] | None = None
        side = 0.0
        for f in range(n):
            pa, pb = a[f].copy(), b[f].copy()
            d = float(np.hypot(*(pa - pb)))
            if d < 0.45:  # b steps round a, on the side it approached from
                if side == 0.0:
                    side = 1.0 if pb[1] >= pa[1] else -1.0
                pb = pa + np.array([pb[0] - pa[0], 0.0])
                gap = np.sqrt(max(0.45**2 - (pb[0] - pa[0]) ** 2, 0.0))
                pb[1] = pa[1] + side * gap
            people = np.array([pa, pb])
            dets = _detections(people, 0.55, rng)
            dets = dets[rng.random(len(dets)) > 0.05]
            tracker.step(dets, DT)
            ids = _ids_by_person(tracker, people)
            if first is None and all(i is not None for i in ids):
                first = ids
        crossings += 1
        last = _ids_by_person(tracker, np.array([a[-1], b[-1]]))
        assert first is not None
        switches += int(last != first)
    assert crossings == 300
    assert switches <= 3, f"{switches} id switches in {crossings} crossings"  # <= 1 per 100


def test_short_occlusion_keeps_the_track_and_long_one_ends_it() -> None:
    tracker = Tracker("s1")
    path = _walk((0.0, 0.0), (3.0, 0.0), 90)
    for f in range(30):
        tracker.step(path[f][None], DT)
    (tr,) = tracker.confirmed()
    tid = tr.track_id
    for _ in range(15):  # 0.5 s hidden behind a shelf end
        tracker.step(np.zeros((0, 2)), DT)
    for f in range(45, 60):
        tracker.step(path[f][None], DT)
    assert [t.track_id for t in tracker.confirmed()] == [tid]
    for _ in range(40):  # gone for good
        tracker.step(np.zeros((0, 2)), DT)
    assert tracker.tracks == []
    assert tracker.ended == 1


def test_anonymous_ids_are_random_per_track_and_carry_the_store() -> None:
    tracker = Tracker("store-9")
    for _ in range(5):
        tracker.step(np.array([[0.0, 0.0], [2.0, 0.0]]), DT)
    ids = [t.anon_id for t in tracker.tracks]
    assert len(set(ids)) == 2
    assert all(re.fullmatch(r"anon-store-9-[0-9a-f]{12}", i) for i in ids)
    assert all(t.public_id == t.anon_id for t in tracker.tracks)


def _calibration() -> Calibration:
    return Calibration(store_id="s1", anchor_lat=51.5, anchor_lon=-0.1,
                       intrinsics=RESOLUTIONS["640x480"].to_dict(), plane_normal=(0.0, -1.0, 0.0),
                       plane_offset=3.0, floor_to_store=(0.0, 0.0, 0.0),
                       kiosks={"k1": (1.0, 1.0)})


def _checkin(uid: str, kiosk: str = "k1", store: str = "s1", action: str = "checkin"
             ) -> KioskInteraction:
    return KioskInteraction(store_id=store, kiosk_id=kiosk, uid=uid, action=action, ts=1)


def test_checkin_binds_the_nearest_track_within_1_5_m() -> None:
    tracker = Tracker("s1")
    binder = KioskBinder(_calibration())
    for _ in range(5):
        tracker.step(np.array([[1.9, 1.0], [1.5, 1.2], [4.0, 4.0]]), DT)
    near = min(tracker.tracks, key=lambda t: np.hypot(*(t.xy - np.array([1.0, 1.0]))))
    binder.submit(_checkin("u-42"), now_s=0.0)
    assert binder.resolve(tracker.tracks, now_s=0.0) == 1
    assert near.uid == "u-42" and near.public_id == "u-42"
    assert sum(t.uid is not None for t in tracker.tracks) == 1
    # checking in again elsewhere moves the uid: it is on one track at a time
    binder.calibration.kiosks["k2"] = (4.0, 4.0)
    binder2 = KioskBinder(binder.calibration)
    binder2.submit(_checkin("u-42", "k2"), now_s=1.0)
    binder2.resolve(tracker.tracks, now_s=1.0)
    assert [t.uid for t in tracker.tracks].count("u-42") == 1
    assert near.uid is None


def test_checkin_with_nobody_near_waits_then_counts_unmatched() -> None:
    tracker = Tracker("s1")
    binder = KioskBinder(_calibration(), wait_s=2.0)
    for _ in range(5):
        tracker.step(np.array([[3.0, 1.0]]), DT)  # 2 m away: too far
    binder.submit(_checkin("u-1"), now_s=0.0)
    assert binder.resolve(tracker.tracks, 0.5) == 0
    assert binder.stats.unmatched == 0  # still waiting
    assert binder.resolve(tracker.tracks, 2.5) == 0
    assert binder.stats.unmatched == 1
    assert all(t.uid is None for t in tracker.tracks)


def test_other_stores_unknown_kiosks_and_other_actions_are_not_bound() -> None:
    binder = KioskBinder(_calibration())
    binder.submit(_checkin("u", store="s2"), 0.0)
    binder.submit(_checkin("u", action="tap"), 0.0)
    binder.submit(_checkin("u", kiosk="k9"), 0.0)
    assert binder.stats.ignored == 2
    assert binder.stats.unknown_kiosk == 1
    assert binder.resolve([], 10.0) == 0
