"""`instore edge ...`: The edge box: depth camera to shopper positions, calibration, view."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(help="The edge box: depth camera to shopper positions, calibration, view.",
                  no_args_is_help=True)
console = Console(stderr=True)
log = logging.getLogger(__name__)

class Source(StrEnum):
    synthetic = "synthetic"
    bag = "bag"
    live = "live"
    auto = "auto"


class Scene(StrEnum):
    walk = "walk"
    checkin = "checkin"


SourceOpt = Annotated[Source, typer.Option(
    "--source", help="Depth frames from: synthetic, bag (a recording: then FILE), live (the "
    "camera), auto (live if a camera is plugged in).")]
FileArg = Annotated[Path | None, typer.Argument(help="The recording for `--source bag` "
                                                     "(.db3 as pyrealsense2 writes, or .bag).")]
CalOpt = Annotated[Path | None, typer.Option("--calibration",
                                             help="Calibration JSON (default: "
                                                  "<data_dir>/edge/calibration.json).")]
ResOpt = Annotated[str, typer.Option(help="Synthetic/live resolution: 640x480 or 1024x768.")]


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


@app.callback()
def _needs_the_camera_stack() -> None:
    from rich.markup import escape  # noqa: PLC0415

    from instore.extras import missing  # noqa: PLC0415

    if (why := missing("edge")) is not None:
        raise _fail(escape(why))


@app.command()
def run(
    source: SourceOpt = Source.synthetic,
    file: FileArg = None,
    calibration: CalOpt = None,
    resolution: ResOpt = "640x480",
    people: Annotated[int, typer.Option(help="Synthetic: people in the scene.")] = 5,
    scene: Annotated[Scene, typer.Option(
        help="Synthetic: walk (people wander) or checkin (one shopper at the kiosk, then "
             "at a shelf).")] = Scene.walk,
    seconds: Annotated[float, typer.Option(help="Stop after this many seconds (0 = until Ctrl-C; "
                                                "a recording stops at its end).")] = 0.0,
    rate_hz: Annotated[float, typer.Option(help="Positions per second per track.")] = 2.0,
    store_id: Annotated[str | None, typer.Option(
        help="Override the calibration's store id.")] = None,
    produce: Annotated[bool, typer.Option(help="Produce to customers_locations.")] = True,
    checkins: Annotated[bool, typer.Option(help="Bind kiosk check-ins to tracks.")] = True,
    quiet: Annotated[bool, typer.Option(help="Do not print tracks.")] = False,
) -> None:
    """Depth frames -> tracks -> customers_locations (prints the tracks once a second)."""
    from edge.calibration import CalibrationError  # noqa: PLC0415
    from edge.pipeline import run_pipeline  # noqa: PLC0415
    from edge.sources import SourceError  # noqa: PLC0415
    from instore.kafka import KafkaUnavailable  # noqa: PLC0415
    from instore.logs import setup_logging  # noqa: PLC0415
    from instore.settings import get_settings  # noqa: PLC0415

    setup_logging()
    settings = get_settings()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if seconds > 0:
        threading.Timer(seconds, stop.set).start()
    out = Console()
    last_print = [0.0]

    def on_frame(_frame: Any, proc: Any) -> None:
        if quiet or proc.now_s - last_print[0] < 1.0:
            return
        last_print[0] = proc.now_s
        live = [tr for tr in proc.tracker.tracks if tr.confirmed]
        cells = []
        for tr in live:
            x, y = proc.store_xy(tr)
            who = "checked-in" if tr.uid else "anon"
            cells.append(f"#{tr.track_id} {who} ({x:.2f}, {y:.2f})")
        st = proc.stats
        out.print(f"t={proc.now_s:6.1f}s tracks={len(live)} {' | '.join(cells)}  "
                  f"[dim]frames={st.frames} missing={st.missing} positions={st.positions}[/]")

    src_kw: dict[str, Any] = {"resolution": resolution, "people": people}
    src: Any = source.value
    try:
        if source == "synthetic" and scene == "checkin":
            from edge.scene import checkin_scene  # noqa: PLC0415
            from edge.sources import SyntheticSource  # noqa: PLC0415

            src = SyntheticSource(checkin_scene(resolution, seconds=max(seconds, 60.0), fps=15.0),
                                  real_time=True)
            src_kw = {}
        stats = run_pipeline(settings, src, stop, path=file, calibration_path=calibration,
                             rate_hz=rate_hz, produce=produce, checkins=checkins,
                             on_frame=on_frame, store_id=store_id, **src_kw)
    except (SourceError, CalibrationError, KafkaUnavailable) as exc:
        raise _fail(str(exc)) from None
    finally:
        stop.set()
    console.print(f"[cyan]edge[/] stopped: {json.dumps(stats.as_dict())}")


@app.command()
def view(
    source: SourceOpt = Source.synthetic,
    file: FileArg = None,
    calibration: CalOpt = None,
    resolution: ResOpt = "640x480",
    frames: Annotated[int, typer.Option(help="Frames to run before the snapshot.")] = 45,
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("edge-view.png"),
) -> None:
    """Write an annotated depth image (PNG): floor, foreground, tracks and ids, kiosks."""
    from edge.calibration import CalibrationError  # noqa: PLC0415
    from edge.pipeline import EdgeProcessor, resolve_source  # noqa: PLC0415
    from edge.sources import SourceError  # noqa: PLC0415
    from edge.view import annotate  # noqa: PLC0415
    from instore.logs import setup_logging  # noqa: PLC0415
    from instore.settings import get_settings  # noqa: PLC0415

    setup_logging()
    settings = get_settings()
    try:
        src, cal, bg = resolve_source(settings, source.value, file, None, calibration,
                                      resolution=resolution, real_time=False, loop=False)
    except (SourceError, CalibrationError) as exc:
        raise _fail(str(exc)) from None
    proc = EdgeProcessor(cal, bg, nominal_fps=src.fps)
    last = None
    try:
        for i, frame in enumerate(src.frames()):
            proc.process(frame, keep_maps=True)
            if frame is not None and frame.depth.shape == (cal.intr.height, cal.intr.width):
                last = frame
            if i + 1 >= frames:
                break
    finally:
        src.close()
    if last is None:
        msg = "the source gave no usable depth frame"
        raise _fail(msg)
    image = annotate(last.depth, last.depth_scale, proc)
    import cv2  # noqa: PLC0415

    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), image)
    live = [tr for tr in proc.tracker.tracks if tr.confirmed]
    console.print(f"[cyan]edge[/] wrote {out} ({image.shape[1]}x{image.shape[0]}), "
                  f"{len(live)} tracks, camera {cal.plane_offset:.2f} m above the floor")


def _parse_ref(text: str) -> Any:
    from edge.calibration import ReferencePoint  # noqa: PLC0415

    try:
        px, st = text.split("=")
        u, v = (float(a) for a in px.split(","))
        x, y = (float(a) for a in st.split(","))
    except ValueError:
        msg = f"reference {text!r} is not U,V=X,Y (pixel = store metres)"
        raise typer.BadParameter(msg) from None
    return ReferencePoint(u=u, v=v, x=x, y=y)


def _parse_kiosk(text: str) -> tuple[str, tuple[float, float]]:
    try:
        kid, st = text.split("=")
        x, y = (float(a) for a in st.split(","))
    except ValueError:
        msg = f"kiosk {text!r} is not ID=X,Y (store metres)"
        raise typer.BadParameter(msg) from None
    return kid, (x, y)


@app.command()
def calibrate(
    source: SourceOpt = Source.synthetic,
    file: FileArg = None,
    resolution: ResOpt = "640x480",
    ref: Annotated[list[str] | None, typer.Option(
        "--ref", help="Reference point U,V=X,Y: a floor marker's pixel and its store metres "
                      "(two or more; synthetic: the scene's markers when omitted).")] = None,
    kiosk: Annotated[list[str] | None, typer.Option(
        "--kiosk", help="Kiosk ID=X,Y: where a shopper stands at it, store metres.")] = None,
    store_id: Annotated[str | None, typer.Option(
        help="Store id (synthetic default: the scene's).")] = None,
    lat: Annotated[float | None, typer.Option(help="Latitude of the store origin.")] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude of the store origin.")] = None,
    bearing: Annotated[float | None, typer.Option(
        help="Bearing of the store's +y axis, degrees clockwise from north.")] = None,
    country: Annotated[str | None, typer.Option(help="Country code.")] = None,
    frames: Annotated[int, typer.Option(help="Empty-floor frames to take the median of.")] = 10,
    out: Annotated[Path | None, typer.Option("--out", help="Where to save (default: "
                                             "<data_dir>/edge/calibration.json).")] = None,
) -> None:
    """Fit the floor plane (RANSAC) and floor -> store -> lat/lon from the empty floor; save it."""
    import numpy as np  # noqa: PLC0415

    from edge.calibration import CalibrationError, calibrate_synthetic  # noqa: PLC0415
    from edge.pipeline import default_calibration_path  # noqa: PLC0415
    from edge.sources import SourceError, SyntheticSource, open_source  # noqa: PLC0415
    from instore.logs import setup_logging  # noqa: PLC0415
    from instore.settings import get_settings  # noqa: PLC0415

    setup_logging()
    settings = get_settings()
    target = out or default_calibration_path(settings)
    refs = [_parse_ref(r) for r in ref or []]
    kiosks = dict(_parse_kiosk(k) for k in kiosk or [])
    try:
        src = open_source(source.value, file, resolution=resolution, real_time=False, loop=False,
                          seconds=2.0)
    except SourceError as exc:
        raise _fail(str(exc)) from None
    try:
        if isinstance(src, SyntheticSource) and not refs:
            cal, background = calibrate_synthetic(src, frames)
        else:
            if lat is None or lon is None or not store_id:
                msg = "give --store-id, --lat and --lon (and --bearing) for a real camera"
                raise _fail(msg)
            cal, background = _calibrate_from_refs(src, frames, refs, store_id, lat, lon,
                                                   bearing, country, kiosks)
        cal = cal.model_copy(update=_given(store_id, lat, lon, bearing, country, kiosks))
    except CalibrationError as exc:
        raise _fail(str(exc)) from None
    finally:
        src.close()
    cal.save(target, np.asarray(background))
    console.print(f"[cyan]edge[/] calibration saved to {target}: camera {cal.plane_offset:.3f} m "
                  f"above the floor, floor inliers {cal.inlier_fraction:.0%}, reference residual "
                  f"{cal.residual_m:.3f} m, kiosks {sorted(cal.kiosks)}")


def _calibrate_from_refs(src: Any, frames: int, refs: list[Any], store_id: str, lat: float,
                         lon: float, bearing: float | None, country: str | None,
                         kiosks: dict[str, tuple[float, float]]) -> tuple[Any, Any]:
    """(calibration, background) from the median of ``frames`` empty-floor depth frames and
    the reference points (a real camera, or the synthetic one given ``--ref``)."""
    from edge.calibration import calibrate as do_calibrate  # noqa: PLC0415
    from edge.calibration import median_depth  # noqa: PLC0415
    from edge.geometry import GeoAnchor  # noqa: PLC0415
    from edge.sources import SyntheticSource  # noqa: PLC0415

    if isinstance(src, SyntheticSource):
        imgs = src.empty_frames(frames)
    else:
        imgs = [f.depth for f in _take(src.frames(), frames)]
    if not imgs:
        msg = "the source gave no depth frames"
        raise _fail(msg)
    background = median_depth(imgs, src.depth_scale)
    assert src.intrinsics is not None
    cal = do_calibrate(background, src.intrinsics, refs, store_id=store_id,
                       anchor=GeoAnchor(lat, lon, bearing or 0.0), country=country,
                       kiosks=kiosks, depth_scale=src.depth_scale)
    return cal, background


def _given(store_id: str | None, lat: float | None, lon: float | None, bearing: float | None,
           country: str | None, kiosks: dict[str, tuple[float, float]]) -> dict[str, Any]:
    """What the command line says of the store, over what the calibration found."""
    updates: dict[str, Any] = {}
    if store_id:
        updates["store_id"] = store_id
    if lat is not None and lon is not None:
        updates |= {"anchor_lat": lat, "anchor_lon": lon}
    if bearing is not None:
        updates["bearing_deg"] = bearing
    if country:
        updates["country"] = country
    if kiosks:
        updates["kiosks"] = kiosks
    return updates


def _take(frames: Any, n: int) -> list[Any]:
    out = []
    for f in frames:
        if f is not None:
            out.append(f)
        if len(out) >= n:
            break
    return out


@app.command()
def record(
    out: Annotated[Path, typer.Argument(help="Recording to write (.db3: pyrealsense2's rosbag2).")],
    seconds: Annotated[float, typer.Option(help="Length of the synthetic sequence.")] = 10.0,
    resolution: ResOpt = "640x480",
    people: Annotated[int, typer.Option(help="People in the scene.")] = 5,
    seed: Annotated[int, typer.Option(help="Scene seed.")] = 0,
) -> None:
    """Record a synthetic sequence with pyrealsense2's recorder (plays back with --source bag)."""
    from edge.scene import default_scene  # noqa: PLC0415
    from edge.sources import SyntheticSource  # noqa: PLC0415

    if out.suffix != ".db3":
        msg = "pyrealsense2 2.59 records rosbag2 files: the name must end in .db3"
        raise _fail(msg)
    out.parent.mkdir(parents=True, exist_ok=True)
    src = SyntheticSource(default_scene(resolution, people=people, seed=seed, seconds=seconds),
                          record_to=out)
    n = sum(1 for f in src.frames() if f is not None)
    src.close()
    console.print(f"[cyan]edge[/] recorded {n} depth frames to {out}")


def _git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None


def bench(
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
    seconds: Annotated[float, typer.Option(
        help="Scene length at 640x480 (1024x768: a quarter).")] = 45.0,
    people: Annotated[int, typer.Option(help="People per scene.")] = 5,
    seed: Annotated[int, typer.Option(help="Scene seed.")] = 1,
    results: Annotated[Path, typer.Option(help="JSONL file to append to.")] = Path(
        "bench/results/edge.jsonl"),
) -> None:
    """Edge box speed (one core) and accuracy on synthetic scenes with ground truth."""
    import os  # noqa: PLC0415

    from bench.edge import bench_run, pin_one_core  # noqa: PLC0415

    cpu = pin_one_core()
    runs = []
    for res, secs in (("640x480", seconds), ("1024x768", seconds / 4)):
        console.print(f"[cyan]bench edge[/] {res}, {people} people, {secs:.0f} s of scene ...")
        r = bench_run(res, seconds=secs, people=people, seed=seed,
                      progress=lambda m: console.print(f"  {m}"))
        console.print(f"  fps {r['fps']}  median {r['median_err_m']} m  p95 {r['p95_err_m']} m  "
                      f"id switches {r['id_switches']} / {r['crossings']} crossings  "
                      f"recall {r['recall']}")
        runs.append(r)
    import numpy as np  # noqa: PLC0415

    weights = np.array([r["matched"] for r in runs], dtype=float)
    summary: dict[str, Any] = {
        "part": "edge",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "cpu_pinned": cpu,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "fps": runs[0]["fps"],
        "fps_1024x768": runs[1]["fps"],
        "median_err_m": max(r["median_err_m"] for r in runs),
        "p95_err_m": max(r["p95_err_m"] for r in runs),
        "id_switches": sum(r["id_switches"] for r in runs),
        "crossings": sum(r["crossings"] for r in runs),
        "recall": round(float(np.average([r["recall"] for r in runs], weights=weights)), 4),
        "fps_note": "pipeline only (software_device delivery, copy, detection, tracking, "
                    "position records), one core; synthetic rendering excluded",
        "runs": runs,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as fh:
        fh.write(json.dumps(summary) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        Console().print_json(json.dumps(summary))
