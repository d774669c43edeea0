# ruff: noqa: F811  (pytest fixtures imported from the harness)
"""Ops routes: liveness, readiness (and its 503 when the broker is gone), Prometheus metrics."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from instore import serving
from tests.conftest import make_settings
from tests.integration.api_harness import OPS, api_settings, client, rds  # noqa: F401

pytestmark = pytest.mark.integration


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert isinstance(checks.pop("data_quality"), bool)  # degrades, never un-readies
    assert checks == {
        "broker": True,
        "redis": True,
        "worker_lag": True,
        "sink_lag": True,
        "catalog_view": True,
    }
    detail = client.get("/ops/status", headers=OPS).json()
    assert detail["ok"] is True and "totals" in detail


def test_metrics_expose_pipeline_counters_and_requests(client, rds):
    rds.hincrby(serving.totals(), "positions", 5)
    rds.hincrby(serving.totals(), "dead:invalid JSON", 2)
    client.get("/promotions", headers=OPS)  # a 403, counted by route template
    text = client.get("/metrics").text
    assert "instore_positions_total" in text
    assert 'instore_dead_letters_total{reason="invalid JSON"}' in text
    assert "instore_worker_lag" in text and "instore_events_per_second" in text
    assert 'instore_api_requests_total{method="GET",route="/promotions",status="403"}' in text


def test_readyz_is_503_without_a_broker(broker_factory, redis_url):
    broker = broker_factory()
    settings = make_settings(broker.bootstrap, redis_url)
    with TestClient(create_app(settings)) as c:
        broker.stop()
        res = c.get("/readyz")
        assert res.status_code == 503
        assert res.json()["checks"]["broker"] is False and res.json()["checks"]["redis"] is True
        assert c.get("/healthz").status_code == 200
