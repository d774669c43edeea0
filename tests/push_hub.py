"""A local push hub as a child process for the push tests (real `instore push hub`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.processes import Child, wait_http
from instore.embedded import free_port
from mobile_push.local_hub.tokens import ApiKey
from tests.conftest import child_env, make_settings

NOWHERE_KAFKA, NOWHERE_REDIS = "127.0.0.1:9", "redis://127.0.0.1:9/0"


@contextmanager
def running_hub(tmp_path_factory: Any, name: str, kafka: str = NOWHERE_KAFKA,
                redis: str = NOWHERE_REDIS) -> Iterator[dict[str, Any]]:
    """Start a hub on a free port (its own data dir); yields base URL, port, API key, child,
    data dir and the settings pointing at it (``instore.ably.make_rest(settings)``
    is the SDK client the sink uses); stops it after."""
    port = free_port()
    settings = make_settings(kafka, redis, hub_port=port)
    work = tmp_path_factory.mktemp(name)
    child = Child(
        "hub",
        ["push", "hub", "--port", str(port)],
        child_env(settings, HUB_PORT=str(port), INSTORE_DATA_DIR=str(work / "data")),
        work / "hub.log",
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/time", child)
        yield {"base": base, "port": port, "key": ApiKey.parse(settings.ably_key),
               "child": child, "data": work / "data", "settings": settings}
    finally:
        child.stop()
