"""`instore push ...`: Offers to phones and kiosks: the Ably push sink and the local push hub."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

app = typer.Typer(
    help="Offers to phones and kiosks: the Ably push sink and the local push hub.",
    no_args_is_help=True,
)


@app.command()
def hub(
    port: Annotated[int | None, typer.Option(help="Port (default: HUB_PORT, 8090).")] = None,
) -> None:
    """Run the local push hub (Ably REST subset + SSE streams + phone/kiosk pages)."""
    from instore.logs import setup_logging  # noqa: PLC0415
    from instore.settings import get_settings  # noqa: PLC0415
    from mobile_push.local_hub.app import serve  # noqa: PLC0415

    setup_logging()
    serve(get_settings(), port=port)


@app.command()
def sink() -> None:
    """Run the push sink: `offers` -> Ably channels shopper:{uid} and kiosk:{store}:{kiosk}."""
    from instore.logs import setup_logging  # noqa: PLC0415
    from instore.settings import get_settings  # noqa: PLC0415
    from mobile_push.sink import run_sink  # noqa: PLC0415

    setup_logging()
    run_sink(get_settings())


@app.command("connect-config")
def connect_config(
    name: Annotated[str, typer.Option(help="Connector name.")] = "instore-offers-to-ably",
    tasks: Annotated[int, typer.Option(help="tasks.max")] = 1,
) -> None:
    """Print the Ably Kafka Connect sink (ChannelSinkConnector) config JSON for the cloud."""
    from mobile_push.connect_config import ably_channel_sink  # noqa: PLC0415

    sys.stdout.write(json.dumps(ably_channel_sink(name, tasks), indent=2) + "\n")


def bench(
    rate: Annotated[float, typer.Option(help="Positions per second to produce.")] = 2000.0,
    seconds: Annotated[float, typer.Option(help="How long to produce.")] = 20.0,
    shoppers: Annotated[int, typer.Option(help="Simulated shoppers (one subscriber each).")] = 400,
    products: Annotated[int, typer.Option(help="Promoted products in the store.")] = 200,
    dwell_s: Annotated[float, typer.Option(help="Worker dwell before an offer.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
    offers_only: Annotated[
        bool,
        typer.Option(help="Skip the worker: produce offers directly and time offer -> received."),
    ] = False,
    transport: Annotated[
        str,
        typer.Option(help="Subscribers: 'websocket' (Ably realtime, as the pages) or 'sse'."),
    ] = "websocket",
) -> None:
    """Latency position -> offer received on the hub stream, on a fresh embedded stack."""
    from rich.console import Console  # noqa: PLC0415

    from bench.push import run_bench  # noqa: PLC0415

    err = Console(stderr=True)

    result = run_bench(
        rate=rate,
        seconds=seconds,
        shoppers=shoppers,
        products=products,
        dwell_s=dwell_s,
        offers_only=offers_only,
        transport=transport,
        progress=lambda m: err.print(f"[cyan]push bench[/] {m}"),
    )
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        Console().print_json(data=result)
