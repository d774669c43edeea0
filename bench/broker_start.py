"""How long the embedded Kafka broker takes to start, with and without its class-data archive.

One node in a temporary dir, three times per variant: a first start (storage formatted just
before), a restart after a clean stop (SIGTERM), and a restart after ``kill -9`` (which also
waits for the node's old session at its controller to end). Each figure is seconds from the
spawn until a metadata request lists the broker (``instore.embedded.kafka.metadata_ready``),
the readiness every part of the project uses.

Variants: ``archive`` maps the class-data archive that ``instore broker install`` recorded
(what every node does when it is there); ``no_archive`` runs the same JVM with ``-Xshare:off``.
``--quick`` adds the tests' C1-only JIT flag (``QUICK_START``) to both.

    python -m bench.broker_start --rounds 3 --json

The figures are appended to ``bench/results/broker.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import percentile
from instore import results
from instore.embedded.kafka import (
    QUICK_START,
    BrokerSetupError,
    EmbeddedKafka,
    class_archive,
    default_libs_dir,
    java_binary,
)

STEPS = ("first_start_s", "restart_s", "restart_after_kill_s")


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return round(time.perf_counter() - started, 2)


def one_round(flags: tuple[str, ...]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="instore-bench-broker-") as tmp:
        node = EmbeddedKafka(Path(tmp) / "kafka", jvm_flags=flags)
        try:
            first = _timed(node.start)
            node.stop()
            restart = _timed(node.start)
            node.kill(1)
            after_kill = _timed(node.start)
        finally:
            node.stop()
    return dict(zip(STEPS, (first, restart, after_kill), strict=True))


def run(rounds: int = 3, quick: bool = False,
        progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    base = QUICK_START if quick else ()
    variants = {"archive": base, "no_archive": (*base, "-Xshare:off")}
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for i in range(rounds):
        for name, flags in variants.items():  # alternated: the machine's load hits both alike
            runs[name].append(one_round(flags))
            progress(f"round {i + 1}/{rounds} {name}: {runs[name][-1]}")
    fig: dict[str, Any] = {"bench": "broker_start", "rounds": rounds, "quick_start": quick}
    for name, got in runs.items():
        for step in STEPS:
            fig[f"{name}_{step}"] = percentile([r[step] for r in got], 0.5, 2)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per variant (medians).")
    parser.add_argument("--quick", action="store_true", help="Add the tests' C1-only JIT flag.")
    parser.add_argument("--json", action="store_true", help="Last line: one JSON object.")
    args = parser.parse_args(argv)
    libs = default_libs_dir()
    try:
        if not class_archive(libs, java_binary()).exists():
            print("error: no class-data archive: run `instore broker install` (make setup)",
                  file=sys.stderr)
            return 1
        fig = run(args.rounds, args.quick,
                  progress=lambda m: print(f"broker start: {m}", file=sys.stderr))
    except BrokerSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    fig = results.append("broker", fig)
    print(json.dumps(fig) if args.json else json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
