"""Depth frames from pyrealsense2, one code path for a live camera, a recording, or a scene.

- ``RealSenseSource()``: the first RealSense device found (``rs.pipeline``), z16 depth;
- ``RealSenseSource(path)``: a recording played back through the same pipeline
  (``config.enable_device_from_file``; ``.db3`` rosbag2 as this pyrealsense2 writes, or ``.bag``);
- ``SyntheticSource(scene)``: the synthetic scene's images fed through ``rs.software_device``
  (a depth sensor with a z16 video stream and the scene's intrinsics), read back as
  ``rs.depth_frame`` objects, optionally recorded with ``rs.recorder``.

Each yields ``DepthFrame`` objects, or ``None`` where a frame did not arrive in time (counted
as missing by the pipeline). Only depth is ever read; no colour stream is enabled.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.geometry import Intrinsics
from edge.scene import DEPTH_SCALE, Renderer, Scene, Truth
from instore.errors import InstoreError

log = logging.getLogger(__name__)


class SourceError(InstoreError, RuntimeError):
    """A source that cannot start; the message says what to do."""


@dataclass
class DepthFrame:
    index: int
    ts_ms: float
    depth: np.ndarray          # uint16 (H, W) z16
    depth_scale: float         # metres per unit
    truth: Truth | None = None  # synthetic scenes only


def _rs() -> Any:
    try:
        import pyrealsense2 as rs  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - listed in pyproject
        msg = ("pyrealsense2 is not importable; run `.venv/bin/pip install pyrealsense2` and "
               "`apt-get install -y libusb-1.0-0`")
        raise SourceError(msg) from exc
    return rs


class FrameSource:
    kind = "base"
    intrinsics: Intrinsics | None = None
    depth_scale: float = DEPTH_SCALE
    fps: float = 30.0

    def frames(self) -> Iterator[DepthFrame | None]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RealSenseSource(FrameSource):
    """A live camera (``path`` None) or a recording, through ``rs.pipeline``."""

    def __init__(self, path: Path | None = None, *, width: int = 640, height: int = 480,
                 fps: int = 30, real_time: bool = True, timeout_ms: int = 1000,
                 max_missing: int = 5) -> None:
        rs = _rs()
        self.kind = "bag" if path else "live"
        self.path = path
        self.fps = float(fps)
        self.timeout_ms = timeout_ms
        self.max_missing = max_missing
        cfg = rs.config()
        if path is not None:
            if not Path(path).exists():
                msg = f"no recording at {path}"
                raise SourceError(msg)
            cfg.enable_device_from_file(str(path), repeat_playback=False)
        else:
            if len(rs.context().query_devices()) == 0:
                msg = ("no RealSense camera found; plug one in, or use `--source synthetic` or "
                       "`--source bag FILE`")
                raise SourceError(msg)
            cfg.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        self._pipe = rs.pipeline()
        try:
            profile = self._pipe.start(cfg)
        except RuntimeError as exc:
            msg = f"cannot start the RealSense pipeline: {exc}"
            raise SourceError(msg) from None
        self._playback = None
        dev = profile.get_device()
        if path is not None:
            self._playback = dev.as_playback()
            self._playback.set_real_time(real_time)
        stream = profile.get_stream(rs.stream.depth).as_video_stream_profile()
        self.intrinsics = Intrinsics.from_rs(stream.get_intrinsics())
        self.fps = float(stream.fps() or fps)
        try:
            self.depth_scale = float(dev.first_depth_sensor().get_depth_scale())
        except RuntimeError:
            self.depth_scale = DEPTH_SCALE
        self._running = True

    def frames(self) -> Iterator[DepthFrame | None]:
        rs = _rs()
        missing_in_a_row = 0
        index = 0
        while self._running:
            ok, fs = self._pipe.try_wait_for_frames(self.timeout_ms)
            if not ok:
                if self._playback is not None and (
                    self._playback.current_status() == rs.playback_status.stopped
                    or missing_in_a_row >= self.max_missing
                ):
                    return
                missing_in_a_row += 1
                yield None
                continue
            depth = fs.get_depth_frame()
            if not depth:
                yield None
                continue
            missing_in_a_row = 0
            arr = np.asanyarray(depth.get_data()).copy()
            units = depth.get_units() if hasattr(depth, "get_units") else self.depth_scale
            yield DepthFrame(index, float(depth.get_timestamp()), arr,
                             float(units or self.depth_scale))
            index += 1

    def close(self) -> None:
        if self._running:
            self._running = False
            try:
                self._pipe.stop()
            except RuntimeError as exc:
                log.warning("realsense pipeline stop: %s", exc)


@dataclass
class Faults:
    """Bad input to inject into a synthetic stream, by frame index."""

    drop: set[int] = field(default_factory=set)              # frame never arrives
    zero: set[int] = field(default_factory=set)              # a frame of all zeros
    wrong_resolution: set[int] = field(default_factory=set)  # a half-size frame


class SyntheticSource(FrameSource):
    """The synthetic scene through ``rs.software_device``: pyrealsense2 frames and intrinsics."""

    kind = "synthetic"

    def __init__(self, scene: Scene, *, real_time: bool = False, faults: Faults | None = None,
                 record_to: Path | None = None, noise: bool = True, loop: bool = False) -> None:
        rs = _rs()
        self.scene = scene
        self.renderer = Renderer(scene, noise=noise, rng_seed=scene.seed)
        self.real_time = real_time
        self.faults = faults or Faults()
        self.loop = loop
        self.fps = scene.fps
        self.intrinsics = scene.intrinsics
        self.depth_scale = DEPTH_SCALE
        self._dev = rs.software_device()
        self._sensor = self._dev.add_sensor("Depth")
        self._sensor.add_read_only_option(rs.option.depth_units, DEPTH_SCALE)
        intr = scene.intrinsics
        self._profile = self._add_stream(intr, 0)
        half = Intrinsics(intr.width // 2, intr.height // 2, intr.fx / 2, intr.fy / 2,
                          intr.ppx / 2, intr.ppy / 2)
        self._half_profile = self._add_stream(half, 1)
        self._recorder = rs.recorder(str(record_to), self._dev) if record_to else None
        self._queue = rs.frame_queue(4, True)
        self._sensor.open(self._profile)
        self._sensor.start(self._queue)
        self._open = True
        self.last_truth: Truth | None = None

    def _add_stream(self, intr: Intrinsics, uid: int) -> Any:
        rs = _rs()
        vs = rs.video_stream()
        vs.type = rs.stream.depth
        vs.index = 0
        vs.uid = uid
        vs.width, vs.height = intr.width, intr.height
        vs.fps = int(round(self.scene.fps))
        vs.bpp = 2
        vs.fmt = rs.format.z16
        vs.intrinsics = intr.to_rs()
        return self._sensor.add_video_stream(vs)

    def _push(self, img: np.ndarray, profile: Any, index: int, ts_ms: float) -> Any:
        rs = _rs()
        f = rs.software_video_frame()
        f.pixels = img
        f.bpp = 2
        f.stride = img.shape[1] * 2
        f.timestamp = ts_ms
        f.domain = (rs.timestamp_domain.system_time if self.real_time
                    else rs.timestamp_domain.hardware_clock)
        f.frame_number = index
        f.profile = profile.as_video_stream_profile()
        self._sensor.on_video_frame(f)
        ok, frame = self._queue.try_wait_for_frame(1000)
        return frame if ok else None

    def frames(self) -> Iterator[DepthFrame | None]:
        start = time.monotonic()
        wall0 = time.time() * 1000.0
        index = 0
        n = self.scene.n_frames
        while self._open:
            i = index % n if self.loop else index
            if i >= n:
                return
            if self.real_time:
                due = start + index / self.fps
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            truth = self.scene.truth(i)
            self.last_truth = truth
            ts = wall0 + index * 1000.0 / self.fps
            index += 1
            if i in self.faults.drop:
                yield None
                continue
            img = self.renderer.render(truth)
            profile = self._profile
            if i in self.faults.zero:
                img = np.zeros_like(img)
            elif i in self.faults.wrong_resolution:
                img = np.ascontiguousarray(img[::2, ::2])
                profile = self._half_profile
            frame = self._push(img, profile, index - 1, ts)
            if frame is None:
                yield None
                continue
            depth = frame.as_depth_frame()
            arr = np.asanyarray(depth.get_data()).copy()
            yield DepthFrame(index - 1, float(depth.get_timestamp()), arr,
                             float(depth.get_units()), truth)

    def empty_frames(self, count: int = 5) -> list[np.ndarray]:
        """Frames of the empty floor (nobody in the scene), for calibration."""
        empty = Truth(np.zeros((0, 2)), np.zeros(0), np.zeros(0))
        out = []
        for k in range(count):
            frame = self._push(self.renderer.render(empty), self._profile, 10_000_000 + k, float(k))
            if frame is not None:
                out.append(np.asanyarray(frame.as_depth_frame().get_data()).copy())
        return out

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._sensor.stop()
            self._sensor.close()
        except RuntimeError as exc:
            log.warning("software sensor stop: %s", exc)
        if self._recorder is not None:
            self._recorder = None  # the recorder writes its file when released
        gc.collect()


def camera_connected() -> bool:
    try:
        return len(_rs().context().query_devices()) > 0
    except (SourceError, RuntimeError):
        return False


def open_source(kind: str, path: Path | None = None, *, resolution: str = "640x480",
                people: int = 5, seconds: float = 60.0, seed: int = 0, real_time: bool = True,
                loop: bool = True, scene: Scene | None = None) -> FrameSource:
    """``synthetic`` | ``bag`` (with ``path``) | ``live`` | ``auto`` (a connected RealSense,
    else the synthetic scene): the source a command asked for."""
    if kind == "auto":
        kind = "live" if camera_connected() else "synthetic"
        log.info("source auto: %s", kind)
    if kind == "synthetic":
        from edge.scene import default_scene  # noqa: PLC0415

        sc = scene or default_scene(resolution, people=people, seed=seed, seconds=seconds)
        return SyntheticSource(sc, real_time=real_time, loop=loop)
    if kind == "bag":
        if path is None:
            msg = "`--source bag` needs the recording: `--source bag FILE`"
            raise SourceError(msg)
        return RealSenseSource(path, real_time=real_time)
    if kind == "live":
        w, h = (int(v) for v in resolution.split("x"))
        return RealSenseSource(None, width=w, height=h)
    msg = f"unknown source {kind!r}: use synthetic, bag FILE, live or auto"
    raise SourceError(msg)
