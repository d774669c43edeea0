"""`instore demo`: the embedded stack with simulated shoppers (or, with ``--camera``, the
synthetic depth camera's edge pipeline) and offers arriving, until the walk ends."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from instore.commands.output import console, fail, print_figures
from instore.logs import setup_logging
from instore.settings import get_settings

if TYPE_CHECKING:
    import threading

    from instore.settings import Settings
    from producers.demo import CameraFeed


def demo(
    seconds: Annotated[float, typer.Option(help="How long shoppers walk.")] = 60.0,
    shoppers: Annotated[int, typer.Option(help="Simulated shoppers (4 in 5 opt in).")] = 40,
    seed: Annotated[int, typer.Option(help="Same seed, same store and walks.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object (the "
                                          "summary).")] = False,
    camera: Annotated[bool, typer.Option("--camera",
                                         help="Shoppers from the synthetic depth camera.")] = False,
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Leave the stack up "
                                               "after the walk, until Ctrl-C.")] = False,
) -> None:
    """Start the embedded stack, walk simulated shoppers through a store, show offers arriving
    and the URLs of the phone page, the kiosk page, the dashboard and the API docs."""
    from instore.embedded import StackError  # noqa: PLC0415
    from instore.kafka import KafkaUnavailable  # noqa: PLC0415

    setup_logging("WARNING")
    settings = get_settings()
    from producers.demo import run_demo  # noqa: PLC0415

    feed = _camera_feed(seconds) if camera else None
    # Ctrl-C and SIGTERM stop the demo and its stack. Python raises KeyboardInterrupt on SIGINT
    # only when SIGINT was not ignored when it started (a parent such as a pytest-xdist worker
    # can pass it on ignored): the handler is set here either way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = run_demo(settings, seconds=seconds, shoppers=shoppers, seed=seed,
                           console=console, live=not as_json and console.is_terminal,
                           on_event=lambda m: console.print(f"[cyan]demo[/] {m}"), camera=feed,
                           keep_running=keep_running)
    except (StackError, KafkaUnavailable) as exc:
        raise fail(str(exc)) from None
    print_figures(summary)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _camera_feed(seconds: float) -> CameraFeed:
    """`demo --camera`: the synthetic depth camera's check-in scene (one shopper checks in at
    the kiosk, then stops at a shelf) through the edge pipeline, and a catalog on its shelves."""
    from edge.pipeline import run_pipeline  # noqa: PLC0415
    from edge.scene import checkin_scene, shelf_products  # noqa: PLC0415
    from edge.sources import SyntheticSource  # noqa: PLC0415
    from instore.records import Promotion, StoreProduct  # noqa: PLC0415
    from producers.demo import CameraFeed  # noqa: PLC0415

    scene = checkin_scene("640x480", seconds=max(seconds, 60.0), fps=15.0)
    products = [StoreProduct(sku=sku, store_id=scene.store_id, segment=seg, name=name,
                             latitude=lat, longitude=lon, country="GB")
                for sku, seg, name, lat, lon in shelf_products(scene)]
    promotions = [Promotion(pid=f"camera-{p.sku}", sku=p.sku, title=f"15% off {p.name}",
                            discount_pct=15, radius_ft=6) for p in products[::2]]
    kiosk_id = next(iter(scene.kiosks))

    def run(settings: Settings, stop: threading.Event) -> object:
        return run_pipeline(settings, SyntheticSource(scene, real_time=True), stop)

    return CameraFeed(products, promotions, scene.store_id, kiosk_id, run)

