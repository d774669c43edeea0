"""`instore bench ...`: the benchmarks. A part's commands module may offer its own ``bench``
(``instore bench push|ksql|edge|api``); the ones here run a private embedded stack or read the
results. Each prints its figures and appends them to bench/results."""

from __future__ import annotations

import json
import signal
import sys
from typing import Annotated

import typer

from instore.commands import api as api_cmds
from instore.commands import cloud as cloud_cmds
from instore.commands import edge as edge_cmds
from instore.commands import ksql as ksql_cmds
from instore.commands import push as push_cmds
from instore.commands.output import console, fail, print_figures

app = typer.Typer(help="Benchmarks: they print figures and append them to bench/results.",
                  no_args_is_help=True)


@app.callback()
def _bench_stops_cleanly() -> None:
    """A benchmark's private stack is stopped in its ``finally``: make SIGTERM run it too
    (Python's default SIGTERM ends the process at once and left every service running)."""

    def _exit(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


# A part's commands module may offer `bench` (-> `instore bench <part>`).
for _name, _part in (("push", push_cmds), ("ksql", ksql_cmds), ("edge", edge_cmds),
                     ("api", api_cmds), ("cloud", cloud_cmds)):
    if hasattr(_part, "bench"):
        app.command(_name)(_part.bench)


@app.command("proximity")
def bench_proximity(
    stores: Annotated[int, typer.Option(help="Stores in the world.")] = 10,
    products: Annotated[int, typer.Option(help="Products per store.")] = 10_000,
    promoted: Annotated[int, typer.Option(help="Promoted products per store.")] = 200,
    events: Annotated[int, typer.Option(help="Positions for the throughput run.")] = 100_000,
    naive: Annotated[bool, typer.Option("--naive", help="The seed demo's scan (baseline).")] = False,
    workers: Annotated[int, typer.Option(help="Faust workers.")] = 1,
    rate: Annotated[float, typer.Option(help="Positions/s for the latency run.")] = 2000.0,
    latency_seconds: Annotated[float, typer.Option(help="Length of the latency run.")] = 10.0,
    ceiling: Annotated[bool, typer.Option(help="Measure the Faust consume-only ceiling.")] = True,
    seed: Annotated[int, typer.Option(help="World and walks seed.")] = 7,
    consenting: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the walking "
                                              "shoppers who opted in to offers.")] = 0.3,
    agents: Annotated[str, typer.Option(help="The worker's agents (WORKER_AGENTS).")] =
        "proximity,policy,analytics",
    peers: Annotated[bool, typer.Option(help="After the worker is stopped, run the same "
                                        "proximity step written with quix-streams and with "
                                        "bytewax, each in its own process on the same broker, "
                                        "timed like the throughput run: peer_<engine>_* "
                                        "figures, best_peer, ratio_to_best_peer.")] = False,
    warmup: Annotated[int, typer.Option(min=0, help="Positions run through first, not "
                                        "measured (JIT, caches).")] = 20_000,
    warmup_seconds: Annotated[float, typer.Option(min=0.0, help="After the warm-up positions, "
                                                  "send positions at --rate, not measured, "
                                                  "until this long has passed (a fresh broker "
                                                  "JIT-compiles for minutes).")]
        = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Positions -> Faust worker -> NEARBY_CUSTOMERS and offers on a private embedded stack:
    positions/s, rows/s, matches per position, p50/p99 latency to the row and to the offer,
    the Faust consume-only ceiling and, with --peers, the same step on quix-streams and bytewax."""
    from bench.proximity import run  # noqa: PLC0415

    fig = run(stores=stores, products=products, promoted=promoted, events=events, naive=naive,
              workers=workers, rate=rate, latency_seconds=latency_seconds,
              ceiling=ceiling, seed=seed, consenting=consenting, agents=agents, peers=peers,
              warmup=warmup, warmup_s=warmup_seconds, progress=lambda m: console.print(f"[cyan]bench[/] {m}"))
    print_figures(fig)
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")


@app.command("soak")
def bench_soak(
    minutes: Annotated[float, typer.Option(help="How long shoppers walk.")] = 10.0,
    rate: Annotated[float, typer.Option(help="Positions/s (2 per shopper).")] = 2000.0,
    faults: Annotated[bool, typer.Option("--faults", help="SIGKILL worker, sink, Redis, API "
                                         "and the broker (with --brokers 3: the leader of "
                                         "customers_locations partition 0), each once.")] = False,
    brokers: Annotated[int, typer.Option(min=1, max=5, help="Embedded Kafka nodes (3: "
                                         "replication factor 3, min.insync.replicas 2).")] = 1,
    only: Annotated[str | None, typer.Option(help="With --faults: only these, comma-separated "
                                             "(worker, sink, redis, api, broker).")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same walks and fault order.")] = 7,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the data dir and logs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Embedded stack + simulated shoppers + a subscriber on every shopper channel, with faults;
    reconciles offers produced vs received (lost, duplicates, consent violations), recovery
    times, and scans the logs (figures appended to bench/results/soak.jsonl)."""
    from bench.soak import run as run_soak  # noqa: PLC0415
    from bench.soak_faults import CLUSTER_FAULTS, FAULTS  # noqa: PLC0415

    only_faults = None
    if only is not None:
        only_faults = tuple(name.strip() for name in only.split(",") if name.strip())
        known = FAULTS if brokers == 1 else CLUSTER_FAULTS
        unknown = [name for name in only_faults if name not in known]
        if unknown or not only_faults or not faults:
            msg = f"--only takes faults of {', '.join(known)} and needs --faults (got {only!r})"
            raise fail(msg)
    fig = run_soak(minutes=minutes, rate=rate, faults=faults, seed=seed, keep_dir=keep,
                   brokers=brokers, only_faults=only_faults,
                   progress=lambda m: console.print(f"[cyan]soak[/] {m}"))
    print_figures({k: v for k, v in fig.items() if not isinstance(v, dict | list)})
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")
    bad = (fig["lost"] or fig["duplicates"] or fig["consent_violations"] or fig["log_leaks"]
           or not fig["services_back"] or fig["faults_recovered"] < fig["faults_injected"])
    raise typer.Exit(1 if bad else 0)


@app.command("archive")
def bench_archive(
    positions: Annotated[int, typer.Option(min=1000, help="Positions to archive (and a NEARBY "
                                           "row for every 4th).")] = 200_000,
    seed: Annotated[int, typer.Option(help="World and walks seed.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """The archiver on a private embedded stack: records/s archived, files, bytes per record,
    and two DuckDB queries' times (figures appended to bench/results/archive.jsonl)."""
    from bench.archive import run_and_record  # noqa: PLC0415

    fig = run_and_record(positions=positions, seed=seed,
                         progress=lambda m: console.print(f"[cyan]archive[/] {m}"))
    print_figures(fig)
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")


@app.command("report")
def bench_report() -> None:
    """Markdown tables of every benchmark run stamped with its broker and commit
    (bench/results/*.jsonl), for docs/benchmarks.md."""
    from bench.report import report  # noqa: PLC0415

    text = report()
    if not text:
        msg = "no stamped results in bench/results yet: run a benchmark first"
        raise fail(msg)
    sys.stdout.write(text)


@app.command("fuzz")
def bench_fuzz(
    inputs: Annotated[int, typer.Option(help="Inputs per topic decoder.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Same seed, same inputs.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Hostile inputs through every topic decoder and the agents' input path: every one must
    end as a record or a dead letter (figures appended to bench/results/fuzz.jsonl)."""
    from bench.fuzz import run as run_fuzz  # noqa: PLC0415

    fig = run_fuzz(inputs, seed, progress=lambda m: console.print(f"[cyan]fuzz[/] {m}"))
    print_figures({k: v for k, v in fig.items() if not isinstance(v, dict)})
    if as_json:
        sys.stdout.write(json.dumps(fig) + "\n")
    raise typer.Exit(1 if fig["crashes"] else 0)

