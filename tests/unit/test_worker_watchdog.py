"""The worker's liveness check: a partition is stalled only when its processed offset has not
moved for ``stall_s`` while the topic holds later events."""

from __future__ import annotations

from stream_apps.watchdog import StallWatch


def test_idle_partition_is_not_stalled() -> None:
    w = StallWatch(stall_s=10)
    for t in range(0, 60, 5):
        assert w.observe(t, {0}, {0: 41}, {0: 42}) == []  # everything up to offset 41 handled


def test_waiting_events_without_progress_is_a_stall() -> None:
    w = StallWatch(stall_s=10)
    assert w.observe(0, {0, 1}, {0: 41, 1: 7}, {0: 90, 1: 8}) == []
    assert w.observe(5, {0, 1}, {0: 41, 1: 7}, {0: 95, 1: 8}) == []
    assert w.observe(10, {0, 1}, {0: 41, 1: 7}, {0: 99, 1: 8}) == [0]


def test_progress_resets_the_clock_and_revocation_forgets() -> None:
    w = StallWatch(stall_s=10)
    w.observe(0, {0}, {0: 1}, {0: 50})
    assert w.observe(9, {0}, {0: 2}, {0: 50}) == []  # moved
    assert w.observe(18, {0}, {0: 2}, {0: 50}) == []  # 9 s since it moved
    assert w.observe(19, {0}, {0: 2}, {0: 50}) == [0]
    w.observe(20, set(), {}, {})  # revoked
    assert w.observe(25, {0}, {0: 2}, {0: 50}) == []  # assigned again: a fresh clock


def test_never_processed_partition_with_events_stalls() -> None:
    w = StallWatch(stall_s=10)
    assert w.observe(0, {3}, {}, {3: 20}) == []
    assert w.observe(11, {3}, {}, {3: 20}) == [3]
