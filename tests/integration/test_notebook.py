"""docs/notebooks/analyst.ipynb runs top to bottom (nbclient) against a real broker, the local
ksqlDB-compatible endpoint with the migrations applied, and an archive the archiver wrote; its
outputs hold the figures of the records the test produced."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from instore import records as r
from instore import topics as t
from instore.kafka import make_producer
from stream_apps.archive.service import Archiver
from tests.integration.api_harness import unique
from tests.integration.test_ksql_endpoint import Endpoint, _start

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "notebooks" / "analyst.ipynb"


def _text(cell: Any) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", "") if o.get("output_type") == "stream"
                   else json.dumps(o.get("data", {})))
    return "".join(out)


def test_analyst_notebook_runs(broker_factory: Any, redis_url: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from instore.commands.ksql.client import make_client
    from instore.commands.ksql.migrations import MIGRATIONS_DIR, migrate

    broker, endpoint = _start(broker_factory, redis_url)
    try:
        _run(endpoint, tmp_path, monkeypatch, make_client, migrate, MIGRATIONS_DIR)
    finally:
        endpoint.stop()
        broker.stop()


def _run(endpoint: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         make_client: Any, migrate: Any, migrations: Path) -> None:
    settings = endpoint.settings.model_copy(update={"archive_url": str(tmp_path / "archive")})
    migrate(make_client(settings, endpoint.url), migrations)
    pid, store = unique("promo"), unique("store")
    now = int(time.time() * 1000)
    producer = make_producer(settings)
    for i in range(8):  # one shopper near the promoted product, 1 s apart: 7 s of dwell
        uid = "nb-shopper"
        producer.produce(t.CUSTOMERS_LOCATIONS.name, key=uid.encode(), timestamp=now + i * 1000,
                         value=r.CustomerLocation(uid=uid, store_id=store, latitude=1,
                                                  longitude=1, ts=now + i * 1000).to_json())
        producer.produce(t.NEARBY_CUSTOMERS.name, key=uid.encode(), timestamp=now + i * 1000,
                         value=r.NearbyCustomer(
                             uid=uid, store_id=store, pid=pid, sku=42, segment="s",
                             distance_ft=2.5, latitude=1, longitude=1, product_latitude=1,
                             product_longitude=1, ts=now + i * 1000).to_json())
    offer = r.Offer(offer_id="nb-offer", uid="nb-shopper", store_id=store, pid=pid, sku=42,
                    title="t", discount_pct=5, distance_ft=2.5, ts=now, expires_at=now + 1)
    producer.produce(t.OFFERS.name, key=b"nb-shopper", value=offer.to_json(), timestamp=now)
    producer.produce(t.OFFER_EVENTS.name, key=b"nb-offer", timestamp=now, value=r.OfferEvent(
        offer_id="nb-offer", uid="nb-shopper", event="redeemed", ts=now + 5).to_json())
    assert producer.flush(10) == 0
    Archiver(settings, group_id=unique("archiver")).run(once=True)

    # the kernel inherits this environment: the notebook reads its settings from it
    monkeypatch.setenv("KSQLDB_URL", endpoint.url)
    monkeypatch.setenv("ARCHIVE_URL", str(tmp_path / "archive"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws
    nb = nbformat.read(NOTEBOOK, as_version=4)

    def executed() -> Any:
        client = NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}})
        return client.execute()

    done = executed()
    cells = [c for c in done.cells if c.cell_type == "code"]
    text = [_text(c) for c in cells]
    assert "NEARBY_PER_PROMOTION_HOURLY" in text[1] and "POSITIONS" in text[1]
    assert pid in text[2] and "8" in text[2]  # the pull query: 8 NEARBY rows this hour
    assert "5 positions" in text[3]  # the push query ended at its LIMIT
    assert text[4].strip().endswith("1 1")  # one offer, redeemed, this hour
    assert f"{store}:42 7.0" in text[6]  # the dwell figure
    images = [o for c in cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the two plots
