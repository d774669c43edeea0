"""`instore bench proximity --peers`: the proximity step on quix-streams and on bytewax, each in
its own process against the bench's broker, timed exactly as the worker's throughput run.

For each engine: fresh topics (``bench-peer-<engine>-positions`` and ``-nearby``, with the
positions' partition count), the peer started, a probe position sent until its row comes back
(the peer has loaded the catalog and joined), the output drained, then the same positions as the
worker's throughput run produced as fast as the producer goes and the rows consumed back
(``bench.proximity._throughput``), with the CPU time of the peer process and of the broker over
that window. The peer is then stopped (SIGTERM, then SIGKILL). A peer that fails is recorded as
``peer_<engine>_error`` (one line) and the next one runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer

from bench.processes import cpu_s
from bench.proximity import _drain, _tail_consumer, _throughput
from instore import records as r
from instore import topics as t
from instore.embedded import Stack
from instore.embedded.services import child_env_for
from instore.errors import InstoreError
from instore.kafka import ensure_topics, make_producer, produce
from instore.proximity import ProximityState
from instore.records import CustomerLocation, StoreProduct, now_ms
from instore.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
QUIX_VENV = ROOT / ".venv-quix"
PROBE_UID = "probe-peer-ready"
READY_TIMEOUT_S = 180.0
Progress = Callable[[str], None]


class PeerFailed(InstoreError, RuntimeError):
    pass


@dataclass(frozen=True)
class Peer:
    engine: str
    module: str
    python: Path
    install: str  # the sentence that says how to get the framework

    def missing(self) -> str | None:
        """Why the peer cannot run here, or None."""
        if self.python != Path(sys.executable):
            return None if self.python.exists() else self.install
        return None if importlib.util.find_spec(self.engine) is not None else self.install


PEERS = (
    Peer("quix", "bench.peers.quix_proximity", QUIX_VENV / "bin" / "python",
         "quix-streams is not installed: run `make setup` (it builds .venv-quix)"),
    Peer("bytewax", "bench.peers.bytewax_proximity", Path(sys.executable),
         "bytewax is not installed: run `make setup` (it installs the `peers` extra)"),
)


def peer_topics(engine: str) -> tuple[t.Topic, t.Topic]:
    """The peer's own input and output topics (the positions' partition count)."""
    return (t.Topic(f"bench-peer-{engine}-positions", r.CustomerLocation, ("uid",),
                    description=f"the {engine} peer's positions"),
            t.Topic(f"bench-peer-{engine}-nearby", r.NearbyCustomer, ("uid",),
                    description=f"the {engine} peer's NEARBY rows"))


def start_peer(peer: Peer, settings: Settings, input_topic: str, output_topic: str,
               state_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """The peer's process, with the settings' environment (its own session: stop it by pid)."""
    env = os.environ | child_env_for(settings)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [str(peer.python), "-m", peer.module, "--input", input_topic, "--output", output_topic,
             "--state-dir", str(state_dir)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_peer(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_peers(settings: Settings, stack: Stack, tmp: Path, state: ProximityState,
              probe: StoreProduct, positions: list[CustomerLocation],
              progress: Progress = lambda m: None) -> dict[str, Any]:
    """Every peer's figures, ``best_peer`` (the fastest peer without an error) among them."""
    fig: dict[str, Any] = {}
    for peer in PEERS:
        progress(f"peer {peer.engine}: the proximity step on {len(positions):,} positions")
        try:
            fig.update(_measure(peer, settings, stack, tmp, state, probe, positions))
        except Exception as exc:  # noqa: BLE001 - one peer's failure is a figure, not the end of the run
            reason = " ".join(str(exc).split()) or type(exc).__name__
            fig[f"peer_{peer.engine}_error"] = reason[:300]
            progress(f"peer {peer.engine} failed: {reason}")
    rates = {p.engine: fig[f"peer_{p.engine}_events_per_s"] for p in PEERS
             if fig.get(f"peer_{p.engine}_events_per_s") and f"peer_{p.engine}_error" not in fig}
    fig["best_peer"] = max(rates, key=rates.__getitem__) if rates else None
    return fig


def _measure(peer: Peer, settings: Settings, stack: Stack, tmp: Path, state: ProximityState,
             probe: StoreProduct, positions: list[CustomerLocation]) -> dict[str, Any]:
    missing = peer.missing()
    if missing:
        raise PeerFailed(missing)
    source, sink = peer_topics(peer.engine)
    ensure_topics(settings, [source, sink])
    nearby = _tail_consumer(settings, sink)
    producer = make_producer(settings)
    log_path = tmp / f"peer-{peer.engine}.log"
    proc = start_peer(peer, settings, source.name, sink.name, tmp / f"peer-{peer.engine}",
                      log_path)
    try:
        _wait_ready(proc, producer, nearby, source, probe, log_path)
        _drain(nearby, 1.0)
        handle = psutil.Process(proc.pid)
        cpu0 = (_process_cpu_s(handle), cpu_s(stack, "broker"))
        got = _throughput(settings, producer, nearby, None, state, positions, topic=source.name)
        cpu1 = (_process_cpu_s(handle), cpu_s(stack, "broker"))
        if proc.poll() is not None:
            reason = f"{peer.engine} exited with {proc.returncode}: {_last_line(log_path)}"
            raise PeerFailed(reason)
    finally:
        stop_peer(proc)
        with contextlib.suppress(RuntimeError):
            nearby.close()
    n = len(positions)
    e = f"peer_{peer.engine}"
    fig = {
        f"{e}_events_per_s": got["events_per_s"],
        f"{e}_cpu_us_per_position": round((cpu1[0] - cpu0[0]) / n * 1e6, 1),
        f"{e}_broker_cpu_us_per_position": round((cpu1[1] - cpu0[1]) / n * 1e6, 1),
        f"{e}_nearby_rows": got["nearby_rows"],
    }
    if got["nearby_rows"] != got["nearby_rows_expected"]:
        fig[f"{e}_error"] = (f"{got['nearby_rows']:,} NEARBY rows consumed, "
                             f"{got['nearby_rows_expected']:,} expected")
    return fig


def _wait_ready(proc: subprocess.Popen[bytes], producer: Any, nearby: Consumer, source: t.Topic,
                product: StoreProduct, log_path: Path) -> None:
    """Send a probe position onto a promoted product until its row comes back."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            reason = f"exited with {proc.returncode} while starting: {_last_line(log_path)}"
            raise PeerFailed(reason)
        position = CustomerLocation(uid=PROBE_UID, store_id=product.store_id,
                                    latitude=product.latitude, longitude=product.longitude,
                                    ts=now_ms())
        produce(producer, source, position)
        producer.flush(10)
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            msg = nearby.poll(0.1)
            if msg is not None and not msg.error() and msg.key() == PROBE_UID.encode():
                return
    reason = (f"no NEARBY row for the probe within {READY_TIMEOUT_S:.0f} s "
              f"(last log line: {_last_line(log_path)})")
    raise PeerFailed(reason)


def _process_cpu_s(proc: Any) -> float:
    """CPU seconds (user + system) of a process and its children so far."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:200] if lines else "no output"
