"""Session fixtures: the real embedded Apache Kafka (KRaft, from the Maven jars `make setup`
fetched) and a real redis-server on free loopback ports, data in temporary dirs. Set
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL to run the suite against existing ones."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from instore.embedded import DEFAULT_PORT_RANGE, free_port, port_open, redis_argv
from instore.embedded.kafka import QUICK_START, EmbeddedKafka
from instore.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# Brokers that tests start through the stack (instore up's code path) start cheap too.
os.environ.setdefault("KAFKA_JVM_FLAGS", " ".join(QUICK_START))


def _worker_port_range() -> str | None:
    """Under pytest-xdist (`make test` runs two workers), each worker and the services it starts
    pick free ports from their own part of the range, so two workers never hand out one port."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not worker or not count:
        return None
    lo, hi = DEFAULT_PORT_RANGE
    size = (hi - lo + 1) // int(count)
    first = lo + int(worker.removeprefix("gw")) * size
    return f"{first}-{first + size - 1}"


if (_ports := _worker_port_range()) is not None:
    os.environ["INSTORE_PORT_RANGE"] = _ports


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting")
        if port_open("127.0.0.1", port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a child, wait ``timeout`` seconds for it to stop cleanly, else SIGKILL it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class BrokerHandle:
    """An embedded Kafka (one node, or ``brokers`` nodes) on free ports with its data in a
    temporary dir: a test may stop it and start it again (its data is kept) or kill a node."""

    def __init__(self, root: Path, brokers: int = 1, **kwargs: object) -> None:
        self.kafka = EmbeddedKafka(root, brokers=brokers, heap_mb=256, jvm_flags=QUICK_START,
                                   **kwargs)  # type: ignore[arg-type]
        self.bootstrap = self.kafka.bootstrap
        self.port = self.kafka.nodes[0].port

    def start(self) -> None:
        self.kafka.start()

    def stop(self) -> None:
        self.kafka.stop()

    def kill(self, node_id: int = 1) -> None:
        self.kafka.kill(node_id)


def _brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., BrokerHandle]]:
    started: list[BrokerHandle] = []

    def _make(brokers: int = 1, **kwargs: object) -> BrokerHandle:
        handle = BrokerHandle(tmp_path_factory.mktemp("kafka"), brokers, **kwargs)
        started.append(handle)
        handle.start()
        return handle

    yield _make
    for handle in started:
        handle.stop()


@pytest.fixture(scope="module")
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., BrokerHandle]]:
    """Start a fresh, isolated broker (for tests that need their own topics' state); the
    module's brokers stop when its tests are done (an idle JVM still costs CPU)."""
    yield from _brokers(tmp_path_factory)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared broker (KAFKA_BOOTSTRAP_SERVERS when set)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    for make in _brokers(tmp_path_factory):
        yield make().bootstrap


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(redis_argv(port, Path(d)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_port(port, proc, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
        stop_process(proc)


def make_settings(bootstrap: str, redis: str, **overrides: object) -> Settings:
    # The API's rate limits live in the session's Redis, shared by every test module's API:
    # budgets that no single module spends, unless a test sets its own (the rate-limit tests).
    overrides.setdefault("api_token_rate_per_min", 100_000)
    overrides.setdefault("api_auth_failures_per_min", 100_000)
    return Settings(kafka_bootstrap_servers=bootstrap, redis_url=redis, _env_file=None,  # type: ignore[call-arg]
                    **overrides)


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for an `instore` child process pointing at the test's broker and Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "REDIS_URL": settings.redis_address,
        "PYTHONUNBUFFERED": "1",
    }
    env |= extra
    return env


def instore_proc(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    out = log_path.open("ab")
    return subprocess.Popen([sys.executable, "-m", "instore", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
