"""`instore produce ...`: simulators and replays that write the topic contract, each with a
progress bar and one line saying what was written."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from instore.commands.output import console, fail
from instore.settings import get_settings

app = typer.Typer(help="Simulators and replays that write the topic contract.",
                  no_args_is_help=True)


@contextlib.contextmanager
def _progress(what: str, total: int) -> Iterator[Any]:
    """A progress bar with the time left (on a terminal); yields ``advance(n=1)``."""
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def _writing() -> Iterator[Any]:
    """A producer for a `produce` command: one sentence and exit 1 when the broker is not
    there or a record was not delivered (never a "wrote ..." line for records that were not)."""
    from instore.kafka import KafkaUnavailable, NotDelivered, command_producer  # noqa: PLC0415

    try:
        producer = command_producer(get_settings())
        yield producer
        producer.finish()
    except (KafkaUnavailable, NotDelivered) as exc:
        raise fail(str(exc)) from None



@app.command("catalog")
def produce_catalog(
    stores: Annotated[int, typer.Option(help="Stores.")] = 2,
    products: Annotated[int, typer.Option(help="Products per store.")] = 400,
    promoted: Annotated[int, typer.Option(help="Promoted SKUs (chain-wide).")] = 12,
    segment_promotions: Annotated[int, typer.Option(help="Segment-wide promotions.")] = 0,
    seed: Annotated[int, typer.Option(help="Same seed, same catalog.")] = 7,
) -> None:
    """Write stores' products (aisles with real lat/lon) and promotions."""
    from producers.publish import publish_world  # noqa: PLC0415
    from producers.world import build_world  # noqa: PLC0415

    world = build_world(stores, products, promoted, seed=seed,
                        segment_promotions=segment_promotions)
    total = len(world.products) + len(world.promotions)
    with _writing() as producer, _progress("catalog records", total) as advance:
        n_p, n_q = publish_world(producer, world.products, world.promotions,
                                 on_sent=lambda _r: advance())
    console.print(f"wrote {n_p:,} products in {stores} stores and {n_q} promotions")


@app.command("shoppers")
def produce_shoppers(
    shoppers: Annotated[int, typer.Option(help="Shoppers.")] = 40,
    hz: Annotated[float, typer.Option(min=1, max=10, help="Positions per second each.")] = 2.0,
    seconds: Annotated[float, typer.Option(help="Stop after this much (sim) time.")] = 60.0,
    stores: Annotated[int, typer.Option(help="Stores (as for `produce catalog`).")] = 2,
    products: Annotated[int, typer.Option(help="Products per store.")] = 400,
    promoted: Annotated[int, typer.Option(help="Promoted SKUs.")] = 12,
    opt_in: Annotated[bool, typer.Option(help="Also write their consents (opted in).")] = True,
    realtime: Annotated[bool, typer.Option(help="Pace in real time (else: as fast as possible).")] = True,
    seed: Annotated[int, typer.Option(help="Same seed, same walks.")] = 7,
) -> None:
    """Walk shoppers through the aisles with stops at shelves, writing `customers_locations`."""
    import itertools  # noqa: PLC0415

    from producers.publish import publish_consents, publish_positions  # noqa: PLC0415
    from producers.shoppers import walk_positions  # noqa: PLC0415
    from producers.world import build_world  # noqa: PLC0415

    world = build_world(stores, products, promoted, seed=seed)
    with _writing() as producer:
        if opt_in:
            publish_consents(producer, [f"shopper-{i + 1:05d}" for i in range(shoppers)])
        horizon = int(seconds * 1000)
        walks = itertools.takewhile(lambda p: (p.ts or 0) < horizon,
                                    walk_positions(world, shoppers=shoppers, hz=hz, seed=seed,
                                                   start_anywhere=True))
        with _progress("positions", int(shoppers * hz * seconds)) as advance:
            n = publish_positions(producer, walks, realtime=realtime,
                                  on_sent=lambda _p: advance())
    console.print(f"wrote {n:,} positions")


@app.command("kiosks")
def produce_kiosks(
    shoppers: Annotated[int, typer.Option(help="Shoppers who check in.")] = 5,
    seed: Annotated[int, typer.Option(help="Same seed, same sessions.")] = 7,
) -> None:
    """Kiosk sessions: check in, views and taps of promoted products, check out."""
    from instore import topics as t  # noqa: PLC0415
    from instore.kafka import produce  # noqa: PLC0415
    from instore.records import now_ms  # noqa: PLC0415
    from producers.kiosks import kiosk_sessions  # noqa: PLC0415
    from producers.world import build_world  # noqa: PLC0415

    world = build_world(2, 400, 12, seed=seed)
    events = list(kiosk_sessions(world, [f"shopper-{i + 1:05d}" for i in range(shoppers)],
                                 seed=seed, start_ms=now_ms()))
    n = 0
    with _writing() as producer, _progress("kiosk interactions", len(events)) as advance:
        for event in events:
            produce(producer, t.KIOSK_INTERACTIONS, event)
            n += 1
            advance()
    console.print(f"wrote {n} kiosk interactions")


@app.command("seed-demo")
def produce_seed_demo(
    positions: Annotated[int, typer.Option(help="Positions to write.")] = 1000,
    seed: Annotated[int, typer.Option(help="Same seed, same records.")] = 7,
) -> None:
    """The seed demo's three generators' shape: customers_locations (uid/lat/lon/country),
    stores_products, products_promotions (segment promotions)."""
    from instore import topics as t  # noqa: PLC0415
    from instore.kafka import produce  # noqa: PLC0415
    from producers.publish import publish_world  # noqa: PLC0415
    from producers.seed_demo import seed_catalog, seed_positions  # noqa: PLC0415

    products, promos = seed_catalog(seed)
    n = 0
    with _writing() as producer:
        publish_world(producer, products, promos)
        for pos in seed_positions(positions, seed):
            produce(producer, t.CUSTOMERS_LOCATIONS, pos.model_dump_json(exclude_none=True,
                    exclude={"source", "accuracy_m"}).encode(), key=pos.uid)
            n += 1
    console.print(f"wrote {len(products)} products, {len(promos)} promotions, {n} positions")
