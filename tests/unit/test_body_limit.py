"""Privacy finding 9: a body size limit in front of every route of the API and the push hub
(the hub's token endpoint included): an oversized body is refused with 413 before any route or
credential check reads it, whether it declares its length or streams in chunks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from instore.bodylimit import BodyLimit
from instore.settings import Settings


def _settings() -> Settings:
    return Settings(_env_file=None, api_max_body_bytes=4096, hub_max_body_bytes=2048)  # type: ignore[call-arg]


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 1024):
        yield b"x" * 1024


@pytest.fixture
def api() -> TestClient:
    from api.main import create_app

    return TestClient(create_app(_settings()))  # no lifespan: nothing behind the routes runs


@pytest.fixture
def hub() -> TestClient:
    from mobile_push.local_hub.app import create_app

    return TestClient(create_app(_settings()))


def test_api_refuses_an_oversized_body_before_authentication(api: TestClient) -> None:
    r = api.post("/promotions", content=b"{" + b" " * 8192 + b"}",
                 headers={"Content-Type": "application/json"})  # no key at all
    assert r.status_code == 413 and "4096 bytes" in r.json()["detail"]
    r = api.post("/shoppers/u1/consent", content=_chunks(8192),
                 headers={"Content-Type": "application/json"})  # chunked: no Content-Length
    assert r.status_code == 413


def test_hub_refuses_an_oversized_token_request(hub: TestClient) -> None:
    key_name = _settings().ably_key.split(":")[0]
    r = hub.post(f"/keys/{key_name}/requestToken", content=b"{" + b" " * 4096 + b"}",
                 headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = hub.post(f"/keys/{key_name}/requestToken", content=_chunks(4096),
                 headers={"Content-Type": "application/json"})  # chunked
    assert r.status_code == 413


def test_a_body_within_the_limit_reaches_the_route_whole() -> None:
    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=4096)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    client = TestClient(app)
    assert client.post("/echo", content=_chunks(3072)).json() == {"received": 3072}  # chunked
    assert client.post("/echo", content=b"x" * 4096).json() == {"received": 4096}
    assert client.post("/echo", content=b"x" * 4097).status_code == 413
