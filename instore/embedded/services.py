"""Which services `instore up` runs, in order, and how each is started.

Each service is an `instore` sub-command in its own process. A part whose package is not
installed is skipped with a note, so the stack still comes up with what is there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import socket
from collections.abc import Callable
from pathlib import Path

from instore.embedded import ServiceSpec, Stack, core_specs, instore_cmd, kafka_nodes
from instore.settings import LOOPBACK, Settings


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def service_specs(settings: Settings, data_dir: Path, *, workers: int = 1) -> list[ServiceSpec]:
    h = settings.host
    specs = list(core_specs(settings, data_dir))
    for i in range(workers):
        specs.append(ServiceSpec(f"worker-{i + 1}" if workers > 1 else "worker",
                                 instore_cmd("worker"), port=None))
    if _has("mobile_push.local_hub.app") and settings.ably_rest_host is None:
        specs.append(ServiceSpec("hub", instore_cmd("push", "hub"), port=settings.hub_port, host=h,
                                 url=f"http://{h}:{settings.hub_port}"))
    if _has("mobile_push.sink"):
        # One sink per stack, restarted by the supervisor: a static member (see settings).
        instance = settings.push_sink_instance_id or sink_instance_id(data_dir)
        specs.append(ServiceSpec("sink", instore_cmd("push", "sink"),
                                 env={"PUSH_SINK_INSTANCE_ID": instance}))
    if _has("stream_apps.ksqldb") and settings.ksqldb_url is None:
        specs.append(ServiceSpec("ksql", instore_cmd("ksql", "serve"), port=settings.ksql_port,
                                 host=LOOPBACK, url=f"http://{LOOPBACK}:{settings.ksql_port}"))
    if _has("stream_apps.archive"):
        specs.append(ServiceSpec("archiver", instore_cmd("archive")))
    if _has("stream_apps.reports") and settings.report_hour_utc >= 0:
        specs.append(ServiceSpec("reports", instore_cmd("report", "--daily")))
    if _has("api.main"):
        specs.append(ServiceSpec("api", instore_cmd("api", "serve"), port=settings.api_port, host=h,
                                 url=f"http://{h}:{settings.api_port}/docs"))
    return specs


def sink_instance_id(data_dir: Path) -> str:
    """The stack's sink's static group member id: this host and this data dir (two stacks on
    one cluster must not share one, or each fences the other)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100] or "host"
    where = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:10]
    return f"{host}-{where}-sink"


def stack_env(settings: Settings) -> dict[str, str]:
    """Environment that points every child at the embedded broker, Redis and ports."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REDIS_URL": settings.redis_address,
        "BROKER_PORT": str(settings.broker_port), "REDIS_PORT": str(settings.redis_port),
        "HUB_PORT": str(settings.hub_port), "API_PORT": str(settings.api_port),
        "KSQL_PORT": str(settings.ksql_port),
        "KAFKA_REPLICATION_FACTOR": str(settings.kafka_replication_factor),
    }
    return env


def isolated_settings(base: Settings, **overrides: object) -> Settings:
    """Settings for a private embedded stack on free loopback ports (benchmarks, demo --isolated)."""
    from instore.embedded import free_port, free_ports  # noqa: PLC0415

    data = base.model_dump()
    brokers = int(overrides.get("kafka_brokers", base.kafka_brokers))  # type: ignore[call-overload]
    data.update(
        kafka_bootstrap_servers=None, redis_url=None, broker_port=free_ports(2 * brokers),
        redis_port=free_port(), hub_port=free_port(), api_port=free_port(),
        ksql_port=free_port(),
    )
    data.update(overrides)
    return Settings.model_validate(data)


def child_env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a child `instore` process that must use exactly these settings."""
    env = stack_env(settings)
    env.update({
        "KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "DWELL_S": str(settings.dwell_s), "COOLDOWN_S": str(settings.cooldown_s),
        "CAP_PER_HOUR": str(settings.cap_per_hour), "WORKER_AGENTS": settings.worker_agents,
        "PROXIMITY_INDEX": settings.proximity_index, "PYTHONUNBUFFERED": "1",
        "NEARBY_ENGINE": settings.nearby_engine,
        "WORKER_OUTPUT_LINGER_MS": str(settings.worker_output_linger_ms),
    })
    env.update(extra)
    return env


def _start_nearby_writer(stack: Stack, on_event: Callable[[str], None] | None) -> None:
    """NEARBY_ENGINE=ksqldb: ksqlDB writes NEARBY_CUSTOMERS, so the local endpoint needs the
    migrations and the writer query now (`instore ksql migrate`, as an operator would run it)."""
    import subprocess  # noqa: PLC0415

    from instore.embedded import StackError  # noqa: PLC0415

    done = subprocess.run(instore_cmd("ksql", "migrate"), env=stack.env, capture_output=True,
                          text=True, timeout=300, check=False)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"NEARBY_ENGINE=ksqldb: `instore ksql migrate` failed: {why}"
        raise StackError(msg)
    if on_event:
        on_event("ksqlDB writes NEARBY_CUSTOMERS (NEARBY_ENGINE=ksqldb): migrations applied")


def wait_for_nodes(settings: Settings, data_dir: Path, stack: Stack) -> None:
    """Until the embedded broker answers; if it does not, the error says how each node's own
    logs end (its last error or warning), since the stack's data dir may be temporary."""
    from instore.kafka import KafkaUnavailable, wait_for_broker  # noqa: PLC0415

    try:
        wait_for_broker(settings, timeout_s=120)
    except KafkaUnavailable as exc:
        if not settings.embedded_kafka:
            raise
        nodes = kafka_nodes(settings, data_dir)
        ends = []
        for node in nodes:
            running = stack.services.get("broker" if len(nodes) == 1 else f"broker-{node.node_id}")
            output = running.log_path if running is not None else None
            ends.append(f"node {node.node_id}: {_last_problem(node.logs / 'server.log', output)}")
        msg = f"{exc}; {'; '.join(ends)}"
        raise KafkaUnavailable(msg) from None


def _last_problem(server_log: Path, output: Path | None) -> str:
    """The last ERROR or WARN line of a node's server.log, else the end of its process output."""
    for path, wanted in ((server_log, ("] ERROR ", "] WARN ")), (output, ("",))):
        if path is None or not path.exists():
            continue
        lines = [line for line in path.read_text(errors="replace").splitlines()
                 if line.strip() and any(w in line for w in wanted)]
        if lines:
            return lines[-1][:500]
    return "nothing logged"


def start_stack(settings: Settings, data_dir: Path, *, workers: int = 1,
                on_event: Callable[[str], None] | None = None,
                only: set[str] | None = None) -> Stack:
    """Start every service in order (broker and Redis first, topics created before the worker).

    ``only`` limits the services started (by name; workers match "worker"). On failure the
    services already started are stopped and the StackError propagates.
    """
    from instore.kafka import ensure_topics  # noqa: PLC0415

    env = stack_env(settings) | {
        "ARCHIVE_URL": settings.archive_url or str((data_dir / "archive").resolve()),
        "NEARBY_ENGINE": settings.nearby_engine,
    }
    stack = Stack(data_dir / "logs", env=env, on_event=on_event)
    try:
        topics_ready = False
        for spec in service_specs(settings, data_dir, workers=workers):
            base = spec.name.split("-")[0]
            if only is not None and base not in only:
                continue
            if base not in ("broker", "redis") and not topics_ready:
                wait_for_nodes(settings, data_dir, stack)
                created = ensure_topics(settings)
                if created and on_event:
                    on_event(f"created topics: {', '.join(created)}")
                topics_ready = True
            stack.start(spec)
            if base == "ksql" and settings.nearby_engine == "ksqldb":
                _start_nearby_writer(stack, on_event)
        if not topics_ready and any(n.startswith("broker") for n in stack.services):
            wait_for_nodes(settings, data_dir, stack)
            ensure_topics(settings)
    except BaseException:
        stack.stop()
        raise
    return stack
