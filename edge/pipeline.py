"""Frames in, ``customers_locations`` out: detection, tracking, check-in binding, production.

``EdgeProcessor`` is the box's logic without Kafka (frames -> tracks -> position records);
``run_pipeline`` wires it to a source, the kiosk check-ins topic and the bounded producer, and
is what `instore edge run` and `instore demo --camera` call.

Bad input never stops it: a frame that does not arrive, a frame with (almost) no valid depth,
a frame whose size is not the calibrated one are each logged (first time, then every 100th)
and counted, and the pipeline goes on with the next frame; the tracker coasts over the gap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.calibration import Calibration, CalibrationError, calibrate_synthetic
from edge.checkin import KioskBinder
from edge.detection import Detections, Detector, DetectorParams
from edge.sources import DepthFrame, FrameSource, SyntheticSource, open_source
from edge.tracking import Track, Tracker, TrackerParams
from instore import topics as t
from instore.records import CustomerLocation, RecordError, decode, now_ms
from instore.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class EdgeStats:
    frames: int = 0            # frames that arrived
    processed: int = 0         # frames that went through detection
    missing: int = 0           # frames that did not arrive in time
    empty: int = 0             # frames with (almost) no valid depth, e.g. all zeros
    wrong_resolution: int = 0  # frames whose size is not the calibrated one
    errors: int = 0            # frames that raised in processing
    detections: int = 0
    positions: int = 0         # position records made
    proc_s: float = 0.0        # seconds spent processing frames
    bad_kiosk_records: int = 0
    sink: dict[str, int] = field(default_factory=dict)
    checkins: dict[str, int] = field(default_factory=dict)
    tracks_started: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["fps_processing"] = round(self.processed / self.proc_s, 1) if self.proc_s else None
        return d


def default_calibration_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / "edge" / "calibration.json"


class EdgeProcessor:
    """Frames -> tracks -> position records, with check-in binding. No I/O."""

    def __init__(self, calibration: Calibration, background_m: np.ndarray | None = None, *,
                 rate_hz: float = 2.0, nominal_fps: float = 30.0, anonymous: bool = True,
                 detector_params: DetectorParams | None = None,
                 tracker_params: TrackerParams | None = None) -> None:
        self.calibration = calibration
        self.intr = calibration.intr
        self.detector = Detector(self.intr, calibration.floor, background_m,
                                 detector_params or DetectorParams())
        self.tracker = Tracker(calibration.store_id, tracker_params or TrackerParams(),
                               in_view=self.detector.in_view)
        self.binder = KioskBinder(calibration)
        self.rate_hz = rate_hz
        self.nominal_dt = 1.0 / nominal_fps
        self.anonymous = anonymous
        self.stats = EdgeStats()
        self.last: Detections | None = None
        self._last_ts_ms: float | None = None
        self._min_valid = int(0.01 * self.intr.width * self.intr.height)
        self.now_s = 0.0

    def _bad(self, kind: str, count: int, detail: str) -> None:
        if count == 1 or count % 100 == 0:
            log.warning("edge frame %s (%d so far): %s; continuing", kind, count, detail)

    def process(self, frame: DepthFrame | None, *, keep_maps: bool = False) -> list[Track] | None:
        """One frame (None = it never arrived); returns the live tracks, or None if skipped."""
        st = self.stats
        if frame is None:
            st.missing += 1
            self._bad("missing", st.missing, "no depth frame in time")
            return None
        st.frames += 1
        h, w = frame.depth.shape[:2]
        if (w, h) != (self.intr.width, self.intr.height):
            st.wrong_resolution += 1
            self._bad("wrong resolution", st.wrong_resolution,
                      f"{w}x{h}, calibrated for {self.intr.width}x{self.intr.height}")
            return None
        t0 = time.perf_counter()
        try:
            if np.count_nonzero(frame.depth[::4, ::4]) * 16 < self._min_valid:
                st.empty += 1
                self._bad("empty", st.empty, "almost no valid depth")
                return None
            if self._last_ts_ms is None:
                dt = self.nominal_dt
            else:
                dt = (frame.ts_ms - self._last_ts_ms) / 1000.0
                if not 0.0 < dt < 2.0:
                    dt = self.nominal_dt
            self._last_ts_ms = frame.ts_ms
            self.now_s += dt
            dets = self.detector.detect(frame.depth, frame.depth_scale, keep_maps=keep_maps)
            self.last = dets
            tracks = self.tracker.step(dets.floor_xy, dt)
            self.binder.resolve(tracks, self.now_s)
            st.processed += 1
            st.detections += len(dets)
            st.tracks_started = self.tracker._next_id - 1  # noqa: SLF001 - the tracker's own count of the ids it gave
            return tracks
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
            st.errors += 1
            self._bad("error", st.errors, f"{type(exc).__name__}: {exc}")
            return None
        finally:
            st.proc_s += time.perf_counter() - t0

    def store_xy(self, track: Track) -> tuple[float, float]:
        x, y = self.calibration.floor_to_store_xy(track.xy)[0]
        return float(x), float(y)

    def positions(self, *, ts_ms: int | None = None, force: bool = False) -> list[CustomerLocation]:
        """Position records due now: confirmed, seen this frame, at most ``rate_hz`` per track."""
        out = []
        period = 1.0 / self.rate_hz if self.rate_hz > 0 else 0.0
        cal = self.calibration
        ts = ts_ms if ts_ms is not None else now_ms()
        for tr in self.tracker.tracks:
            if not tr.confirmed or tr.misses > 0:
                continue
            if tr.uid is None and not self.anonymous:
                continue
            if not force and self.now_s - tr.last_emit_s < period - 1e-6:
                continue
            tr.last_emit_s = self.now_s
            x, y = self.store_xy(tr)
            lat, lon = cal.anchor.to_latlon(x, y)
            sigma = float(np.sqrt(max(tr.p[0, 0] + tr.p[1, 1], 0.0)))
            out.append(CustomerLocation(uid=tr.public_id, store_id=cal.store_id, latitude=lat,
                                        longitude=lon, country=cal.country, ts=ts,
                                        source="camera", accuracy_m=round(0.10 + 2 * sigma, 3)))
        self.stats.positions += len(out)
        return out

    def checkin_raw(self, raw: bytes | None) -> None:
        """A raw ``kiosk_interactions`` value; bad ones are counted and skipped."""
        from instore.records import KioskInteraction  # noqa: PLC0415

        try:
            rec = decode(KioskInteraction, raw)
        except RecordError as exc:
            self.stats.bad_kiosk_records += 1
            if self.stats.bad_kiosk_records == 1:
                log.warning("bad kiosk_interactions record skipped: %s", exc.reason)
            return
        self.binder.submit(rec, self.now_s)


def load_calibration(settings: Settings, path: Path | None
                     ) -> tuple[Calibration, np.ndarray | None]:
    p = path or default_calibration_path(settings)
    cal = Calibration.load(p)
    return cal, cal.load_background(p)


def _kiosk_consumer(settings: Settings, since_ms: int) -> Any:
    from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition  # noqa: PLC0415

    from instore.kafka import make_consumer  # noqa: PLC0415

    name = t.KIOSK_INTERACTIONS.name
    consumer = make_consumer(settings)
    md = consumer.list_topics(name, timeout=10)
    parts = sorted(md.topics[name].partitions) if name in md.topics else []
    tps = [TopicPartition(name, p, since_ms) for p in parts]
    try:
        offsets = consumer.offsets_for_times(tps, timeout=5)
        offsets = [TopicPartition(name, tp.partition,
                                  tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                   for tp in offsets]
    except KafkaException as exc:
        log.info("offsets_for_times unavailable (%s): reading check-ins from the beginning", exc)
        offsets = [TopicPartition(name, p, OFFSET_BEGINNING) for p in parts]
    consumer.assign(offsets)
    return consumer


def resolve_source(settings: Settings, source: FrameSource | str, path: Path | None,
                   calibration: Calibration | None, calibration_path: Path | None,
                   **source_kw: Any) -> tuple[FrameSource, Calibration, np.ndarray | None]:
    """Open the source and find its calibration (a synthetic scene calibrates itself if needed)."""
    src = source if isinstance(source, FrameSource) else open_source(source, path, **source_kw)
    background = None
    if calibration is None:
        try:
            calibration, background = load_calibration(settings, calibration_path)
        except CalibrationError:
            if not isinstance(src, SyntheticSource):
                src.close()
                raise
            calibration, background = calibrate_synthetic(src)
            log.info("no calibration file: calibrated from the synthetic scene")
        if isinstance(src, SyntheticSource) and calibration.intr != src.scene.intrinsics:
            log.info("calibration is for another resolution: calibrating from the synthetic scene")
            calibration, background = calibrate_synthetic(src)
    return src, calibration, background


def run_pipeline(settings: Settings, source: FrameSource | str, stop_event: threading.Event, *,
                 path: Path | None = None, calibration: Calibration | None = None,
                 calibration_path: Path | None = None, background_m: np.ndarray | None = None,
                 rate_hz: float = 2.0, produce: bool = True, checkins: bool = True,
                 anonymous: bool = True, max_buffer: int = 10_000, max_frames: int | None = None,
                 store_id: str | None = None,
                 on_frame: Callable[[DepthFrame | None, EdgeProcessor], None] | None = None,
                 **source_kw: Any) -> EdgeStats:
    """Run the edge box until ``stop_event`` is set or the source ends; returns the stats.

    ``source`` is a ``FrameSource`` or ``"synthetic"`` / ``"bag"`` (with ``path``) / ``"live"``.
    With ``produce`` the positions go to ``customers_locations`` through the bounded buffer;
    with ``checkins`` kiosk check-ins for this store bind uids to tracks. ``store_id``
    overrides the calibration's (e.g. to place a synthetic camera in the demo's store).
    """
    src, cal, bg = resolve_source(settings, source, path, calibration, calibration_path,
                                  **source_kw)
    if background_m is not None:
        bg = background_m
    if store_id:
        cal = cal.model_copy(update={"store_id": store_id})
    proc = EdgeProcessor(cal, bg, rate_hz=rate_hz, nominal_fps=src.fps, anonymous=anonymous)
    sink = None
    consumer = None
    started_ms = now_ms()
    log.info("edge pipeline starting: source=%s %dx%d store=%s produce=%s checkins=%s",
             src.kind, cal.intr.width, cal.intr.height, cal.store_id, produce, checkins)
    try:
        if produce or checkins:
            from instore.kafka import ensure_topics, wait_for_broker  # noqa: PLC0415

            wait_for_broker(settings)
            ensure_topics(settings, [t.CUSTOMERS_LOCATIONS, t.KIOSK_INTERACTIONS])
        if produce:
            from edge.producer import LocationSink  # noqa: PLC0415

            sink = LocationSink(settings, max_buffer=max_buffer)
        if checkins:
            consumer = _kiosk_consumer(settings, started_ms - 30_000)
        for frame in src.frames():
            if stop_event.is_set():
                break
            if consumer is not None:
                for msg in consumer.consume(num_messages=100, timeout=0):
                    if msg.error() is None:
                        proc.checkin_raw(msg.value())
            proc.process(frame)
            if frame is not None and proc.stats.processed:
                records = proc.positions()
                if sink is not None:
                    for rec in records:
                        sink.offer(rec)
            if sink is not None:
                sink.pump()
            if on_frame is not None:
                on_frame(frame, proc)
            if max_frames is not None and proc.stats.frames >= max_frames:
                break
    finally:
        src.close()
        if consumer is not None:
            consumer.close()
        if sink is not None:
            proc.stats.sink = sink.close().as_dict()
        proc.stats.checkins = proc.binder.stats.as_dict()
        log.info("edge pipeline stopped: %s", {k: v for k, v in proc.stats.as_dict().items()})
    return proc.stats
