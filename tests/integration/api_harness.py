"""Fixtures shared by the API's integration tests: the app on the real broker and Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from instore.settings import DEV_KEYS, Settings
from tests.conftest import make_settings

MARKETER = {"X-API-Key": DEV_KEYS["marketer"]}
ANALYST = {"X-API-Key": DEV_KEYS["analyst"]}
OPS = {"X-API-Key": DEV_KEYS["ops"]}
KIOSK = {"X-API-Key": DEV_KEYS["kiosk"]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def poll(check: Callable[[], Any], timeout_s: float = 20.0, step_s: float = 0.1) -> Any:
    """Wait for behaviour: return the first truthy result of ``check`` or fail."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(step_s)
    raise AssertionError(f"condition not met in {timeout_s}s (last: {last!r})")


@pytest.fixture(scope="module")
def api_settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    return make_settings(kafka_bootstrap, redis_url)


@pytest.fixture(scope="module")
def client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as c:
        assert c.app.state.services.tables.wait_caught_up(30)  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def rds(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()
