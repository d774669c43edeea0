"""Worker processes for a persistent query: Kafka Streams' stream threads, as processes.

Python runs one thread at a time, so a query whose work is per record (a stream query, or a
stream-table join: the table is small and every worker reads all of it, like a GlobalKTable)
splits its stream partitions over ``ksql.streams.num.stream.threads`` processes. The query's
own thread takes the first share; each other share runs in a spawned process with the same
plan (re-planned there from the statement and the metastore entries it reads), its own
consumer (the query's group, assigned partitions, its own offsets committed) and producer.

A worker reports deltas of its counters, its idle state and its error to the query's thread
through a pipe every 100 ms; the query shows the sums (SHOW QUERIES, wait_idle, the bench).
A failing worker fails the query, as a failing stream thread does in ksqlDB.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import sys
import types
from typing import Any

log = logging.getLogger(__name__)

REPORT_S = 0.1


def eligible(plan: Any) -> bool:
    """Per-record work only: no stream aggregation, no stream-stream join buffers (those need
    a key's records in one place)."""
    return plan.kind == "stream" and not any(j.stream for j in plan.joins)


def spawn(spec: dict[str, Any], partitions: set[tuple[str, int]]) -> tuple[Any, Any, Any]:
    """Start one worker for ``partitions``; returns (process, reports pipe end, control pipe
    end). The control pipe, not a shared lock, says stop: a worker killed mid-way cannot leave
    anything locked, and a worker whose query process is gone sees the pipe close and exits."""
    ctx = mp.get_context("spawn")
    reports, reports_w = ctx.Pipe(duplex=False)
    control_r, control = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=worker_main,
        args=(spec, sorted(partitions), reports_w, control_r),
        name=f"ksql-{spec['query_id']}-worker",
        daemon=True,
    )
    # The worker needs nothing from the main script (worker_main lives here): a stub main
    # module keeps spawn from re-running a script that lacks the __main__ guard.
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        proc.start()
    finally:
        sys.modules["__main__"] = main
    reports_w.close()
    control_r.close()
    return proc, reports, control


def worker_main(spec: dict[str, Any], partitions: list[tuple[str, int]], conn: Any,
                control: Any) -> None:
    from instore.kafka import make_producer  # noqa: PLC0415
    from instore.settings import Settings  # noqa: PLC0415
    from stream_apps.ksqldb import syntax as sx  # noqa: PLC0415
    from stream_apps.ksqldb.errors import StatementError  # noqa: PLC0415
    from stream_apps.ksqldb.planner import plan_select  # noqa: PLC0415
    from stream_apps.ksqldb.processing_log import ProcessingLog  # noqa: PLC0415
    from stream_apps.ksqldb.runners import QueryRunner  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(**spec["settings"])
    sources = spec["sources"]

    def lookup(name: str) -> Any:
        if name not in sources:
            msg = f"{name} does not exist."
            raise StatementError(msg)
        return sources[name]

    (stmt,) = sx.parse(spec["statement"])
    plan = plan_select(stmt.select, lookup, persistent=True)  # type: ignore[attr-defined]
    producer = make_producer(settings)
    topic = spec["processing_log_topic"]

    def write_log(value: bytes, ts: int) -> None:
        producer.produce(topic, value=value, timestamp=ts)
        producer.poll(0)

    runner = QueryRunner(
        spec["query_id"],
        plan,
        settings,
        sink=spec["sink"],
        offset_reset=spec["offset_reset"],
        start_offsets=spec["start_offsets"],
        statement=spec["statement"],
        processing_log=ProcessingLog(write_log if topic else None),
        stream_partitions=set(partitions),
        probe_idle=True,
    )
    runner.start()
    sent: dict[str, Any] = {"in": 0, "out": 0, "errors": 0, "busy": 0.0, "cpu": 0.0,
                            "consumed": {}}
    try:
        while True:
            stopping = control.poll(REPORT_S)  # "stop", or the query's process is gone
            consumed = dict(runner.consumed)
            report = {
                "in": runner.records_in - sent["in"],
                "out": runner.records_out - sent["out"],
                "errors": runner.processing_errors - sent["errors"],
                "busy": runner.busy_s - sent["busy"],
                "cpu": runner.cpu_s - sent["cpu"],
                "consumed": {t: n - sent["consumed"].get(t, 0) for t, n in consumed.items()},
                "last_active": runner.last_active,
                "caught_up": runner.caught_up,
                "last_error": runner.last_processing_error,
                "error": runner.error,
                "alive": runner.alive,
            }
            sent = {"in": runner.records_in, "out": runner.records_out,
                    "errors": runner.processing_errors, "busy": runner.busy_s,
                    "cpu": runner.cpu_s, "consumed": consumed}
            try:
                conn.send(report)
            except (BrokenPipeError, OSError):
                break  # the query is gone
            if stopping or not runner.alive:
                break
    finally:
        runner.stop(timeout=10)
        producer.flush(5)
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.close()


class Worker:
    """The query thread's handle on one worker process."""

    def __init__(self, spec: dict[str, Any], partitions: set[tuple[str, int]]) -> None:
        self.partitions = partitions
        self.proc, self.conn, self.control = spawn(spec, partitions)
        self.caught_up = False
        self.alive = True
        self.reported = False

    def drain(self, runner: Any) -> None:
        """Apply the worker's reports to ``runner``'s counters (in the query's thread)."""
        try:
            while self.conn.poll():
                r = self.conn.recv()
                self.reported = True
                if r["in"]:
                    runner.caught_up = False
                runner.records_in += r["in"]
                runner.records_out += r["out"]
                runner.processing_errors += r["errors"]
                runner.busy_s += r["busy"]
                runner.cpu_s += r["cpu"]
                for t, n in r["consumed"].items():
                    runner.consumed[t] = runner.consumed.get(t, 0) + n
                runner.last_active = max(runner.last_active, r["last_active"])
                if r["last_error"]:
                    runner.last_processing_error = r["last_error"]
                self.caught_up = r["caught_up"]
                self.alive = r["alive"]
                if r["error"] and runner.error is None:
                    runner.error = f"worker {self.proc.pid}: {r['error']}"
        except (EOFError, OSError):
            self.alive = False
        if not self.proc.is_alive() and runner.error is None and not runner.stopping:
            runner.error = f"worker process {self.proc.pid} exited ({self.proc.exitcode})"

    def stop(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.control.send("stop")
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        with contextlib.suppress(OSError):
            self.conn.close()
        with contextlib.suppress(OSError):
            self.control.close()

