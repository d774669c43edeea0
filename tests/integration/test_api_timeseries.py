"""GET /analytics/timeseries over an archive (the daily reports' test archive, written through
the archiver's own code): offers and redemptions per hour and per minute agree with the daily
report's hourly figures, per store and per promotion, with the marketer's labels; bad ranges
are refused with the reason; marketers and analysts only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from instore import archive as a
from instore.settings import Settings
from stream_apps.reports import figures
from tests.integration.api_harness import (  # noqa: F401
    ANALYST,
    MARKETER,
    OPS,
    api_settings,
    clear_rate_limits,
)
from tests.unit.test_reports import DAY, GAP_S, START, WINDOW_S, build_archive

pytestmark = pytest.mark.integration
H, M = 3_600_000, 60_000


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ts-archive")
    build_archive(root)
    return root


@pytest.fixture(scope="module")
def client(api_settings: Settings, archive: Path) -> Iterator[TestClient]:  # noqa: F811
    clear_rate_limits(api_settings)
    s = api_settings.model_copy(update={"archive_url": str(archive), "archive_flush_s": 7.0})
    with TestClient(create_app(s)) as c:
        yield c


def series(client: TestClient, **params: Any) -> dict[str, Any]:
    res = client.get("/analytics/timeseries", headers=MARKETER, params=params)
    assert res.status_code == 200, res.text
    return res.json()


def test_hourly_per_store_agrees_with_the_daily_report(client: TestClient, archive: Path) -> None:
    con = a.connect(str(archive))
    try:
        report = figures.compute(con, "s1", DAY, dwell_gap_s=GAP_S, basket_window_s=WINDOW_S)
    finally:
        con.close()
    day = {"bucket": "hour", "from": START, "to": START + 24 * H}
    offers = series(client, metric="offers", by="store", **day)
    redeemed = series(client, metric="redemptions", by="store", **day)
    assert offers["start"] == START and offers["buckets"] == 24 and offers["bucket_ms"] == H
    assert offers["archive_delay_s"] == 7.0
    s1_offers = next(s for s in offers["series"] if s["key"] == "s1")["counts"]
    s1_redeemed = next(s for s in redeemed["series"] if s["key"] == "s1")["counts"]
    assert s1_offers == [h.offers for h in report.hourly]
    assert s1_redeemed == [h.redemptions for h in report.hourly]
    # by hand: the day's offers of s1 with an identity (o9 has none), o1's redelivery once
    assert sum(s1_offers) == 9 and s1_offers[9] == 3 and s1_offers[23] == 1
    assert s1_redeemed[0] == 2  # o0 (offered the day before) and o7
    s2 = next(s for s in redeemed["series"] if s["key"] == "s2")
    assert s2["total"] == 1  # dave's o10


def test_per_promotion_minutes_and_filters(client: TestClient) -> None:
    t0 = START + 9 * H
    one = series(client, metric="redemptions", bucket="minute", by="promotion",
                 **{"from": t0, "to": t0 + H})
    by_pid = {s["key"]: s for s in one["series"]}
    # o1 (p1, first redeemed at +5 min; its redelivery at +6 min counts nothing), o10 (p1 in
    # s2, +1 min), o5 (p2, +40 min)
    assert by_pid["p1"]["counts"][5] == 1 and by_pid["p1"]["counts"][6] == 0
    assert by_pid["p1"]["counts"][1] == 1 and by_pid["p1"]["total"] == 2
    assert by_pid["p2"]["counts"][40] == 1 and by_pid["p2"]["total"] == 1
    assert by_pid["p1"]["label"] == "offer p1"  # no live promotion p1: the archived title
    only = series(client, metric="redemptions", bucket="minute", store_id="s2",
                  **{"from": t0, "to": t0 + H})
    assert [s["total"] for s in only["series"]] == [1]
    assert only["series"][0]["label"] == "all offers"
    none = series(client, metric="offers", bucket="hour", pid="nope",
                  **{"from": START, "to": START + 24 * H})
    assert none["series"] == [] and none["buckets"] == 24


def test_bad_ranges_and_roles(client: TestClient) -> None:
    res = client.get("/analytics/timeseries", headers=MARKETER,
                     params={"from": START, "to": START - 1})
    assert res.status_code == 422 and "after" in res.text
    res = client.get("/analytics/timeseries", headers=MARKETER,
                     params={"bucket": "minute", "from": START, "to": START + 30 * 24 * H})
    assert res.status_code == 422 and "hourly" in res.text
    # past the year 3000 (the latest a record may name): refused, not a 500 from the date maths
    res = client.get("/analytics/timeseries", headers=MARKETER, params={"to": 2965276188281077})
    assert res.status_code == 422
    assert client.get("/analytics/timeseries", headers=ANALYST).status_code == 200
    assert client.get("/analytics/timeseries", headers=OPS).status_code == 403
    assert client.get("/analytics/timeseries").status_code == 401
