"""Kiosk check-in: bind a shopper's uid to the track standing at that kiosk.

A ``checkin`` on ``kiosk_interactions`` for this store and a kiosk the calibration knows binds
its uid to the confirmed track nearest the kiosk's floor spot, if one is within ``radius_m``
(1.5 m). A check-in that finds nobody waits ``wait_s`` for a track to appear (the kiosk's
clock and the camera's are not the same), then counts as unmatched. A uid is bound to one
track at a time: a new check-in moves it. From then on that track's positions carry the uid;
every other track keeps its anonymous id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from edge.calibration import Calibration
from edge.tracking import Track
from instore.records import KioskInteraction

log = logging.getLogger(__name__)


@dataclass
class CheckinStats:
    received: int = 0
    bound: int = 0
    unmatched: int = 0
    unknown_kiosk: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Pending:
    kiosk_id: str
    uid: str
    expires_s: float


@dataclass
class KioskBinder:
    calibration: Calibration
    radius_m: float = 1.5
    wait_s: float = 3.0
    stats: CheckinStats = field(default_factory=CheckinStats)
    _pending: list[_Pending] = field(default_factory=list)
    _kiosk_floor: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kiosk_id in self.calibration.kiosks:
            xy = self.calibration.kiosk_floor(kiosk_id)
            if xy is not None:
                self._kiosk_floor[kiosk_id] = xy

    def submit(self, interaction: KioskInteraction, now_s: float) -> None:
        if (interaction.action != "checkin" or interaction.uid is None
                or interaction.store_id != self.calibration.store_id):
            self.stats.ignored += 1
            return
        self.stats.received += 1
        if interaction.kiosk_id not in self._kiosk_floor:
            self.stats.unknown_kiosk += 1
            log.warning("check-in at kiosk %s, which this camera's calibration does not know",
                        interaction.kiosk_id)
            return
        self._pending.append(_Pending(interaction.kiosk_id, interaction.uid, now_s + self.wait_s))

    def resolve(self, tracks: list[Track], now_s: float) -> int:
        """Bind what can be bound now; returns how many check-ins were bound."""
        if not self._pending:
            return 0
        bound = 0
        keep: list[_Pending] = []
        live = [tr for tr in tracks if tr.confirmed and tr.misses == 0]
        for pend in self._pending:
            kxy = self._kiosk_floor[pend.kiosk_id]
            best: Track | None = None
            best_d = self.radius_m
            for tr in live:
                d = float(np.hypot(*(tr.xy - kxy)))
                if d <= best_d:
                    best, best_d = tr, d
            if best is None:
                if now_s >= pend.expires_s:
                    self.stats.unmatched += 1
                    log.info("check-in at kiosk %s: nobody within %.1f m", pend.kiosk_id,
                             self.radius_m)
                else:
                    keep.append(pend)
                continue
            for tr in tracks:  # a uid lives on one track at a time
                if tr.uid == pend.uid and tr is not best:
                    tr.uid = None
            best.uid = pend.uid
            best.bound_at_s = now_s
            bound += 1
            self.stats.bound += 1
            log.info("check-in at kiosk %s bound to track %d", pend.kiosk_id, best.track_id)
        self._pending = keep
        return bound
