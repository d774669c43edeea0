"""Prometheus metrics: the pipeline's counters from the serving store (positions, nearby,
offers, dead letters per reason, offer events), the worker's lag, events/s, and the API's own
requests (labelled by route template, never by a path holding a uid)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from api.funnel import hash_of
from api.services import Services
from instore import groups, health, quality, serving
from instore.records import now_ms

log = logging.getLogger(__name__)
LAG_CACHE_S = 10.0


class PipelineCollector(Collector):
    def __init__(self, services_of: object) -> None:
        self._services_of = services_of
        self._lock = threading.Lock()
        self._lag: dict[str, int] = {}
        self._lag_at = 0.0
        self._last: tuple[float, int] | None = None
        self._rate = 0.0

    def _services(self) -> Services | None:
        return self._services_of()  # type: ignore[operator,no-any-return]

    def _worker_lag(self, services: Services) -> dict[str, int]:
        with self._lock:
            if time.monotonic() - self._lag_at > LAG_CACHE_S:
                self._lag_at = time.monotonic()
                try:
                    self._lag = health.consumer_lag(
                        services.settings, groups.worker(services.settings),
                        health.worker_topics(services.settings))
                except Exception as exc:  # noqa: BLE001 (a scrape must never fail on lag)
                    log.warning("metrics: worker lag unavailable: %s", type(exc).__name__)
                    self._lag = {}
            return dict(self._lag)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        services = self._services()
        if services is None:
            return
        raw: dict[str, str] = {}
        try:
            raw = hash_of(services.redis, serving.totals())
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: serving store unavailable: %s", type(exc).__name__)
        for name, help_text in (("positions", "positions processed by the worker"),
                                ("nearby", "NEARBY_CUSTOMERS rows"),
                                ("offers", "offers produced")):
            c = CounterMetricFamily(f"instore_{name}", help_text)
            c.add_metric([], float(raw.get(name, 0)))
            yield c
        dead = CounterMetricFamily("instore_dead_letters", "dead letters by reason",
                                   labels=["reason"])
        for key, value in raw.items():
            if key.startswith("dead:"):
                dead.add_metric([key.removeprefix("dead:")], float(value))
        yield dead
        events = CounterMetricFamily("instore_offer_events", "offer events", labels=["event"])
        for event in ("delivered", "opened", "redeemed"):
            events.add_metric([event], float(raw.get(event, 0)))
        yield events
        now, positions = time.monotonic(), int(raw.get("positions", 0))
        with self._lock:
            if self._last is not None and now > self._last[0]:
                self._rate = max(0.0, (positions - self._last[1]) / (now - self._last[0]))
            self._last = (now, positions)
            rate = self._rate
        g = GaugeMetricFamily("instore_events_per_second",
                              "positions per second between the last two scrapes")
        g.add_metric([], rate)
        yield g
        lag = GaugeMetricFamily("instore_worker_lag", "worker consumer lag (records) by topic",
                                labels=["topic"])
        for topic, lagged in self._worker_lag(services).items():
            lag.add_metric([topic], float(lagged))
        yield lag
        yield from self._quality(services)
        view = GaugeMetricFamily("instore_api_catalog_loaded",
                                 "1 when the API's table view has caught up")
        view.add_metric([], 1.0 if services.tables.caught_up.is_set() else 0.0)
        yield view
        writes = CounterMetricFamily("instore_api_writes", "records the API wrote, by topic",
                                     labels=["topic"])
        for topic, n in services.publisher.sent.items():
            writes.add_metric([topic], float(n))
        yield writes


    def _quality(self, services: Services) -> Iterator[GaugeMetricFamily]:
        """Data quality over the last DQ_WINDOW_S (the archiver counts it)."""
        try:
            report = quality.check(services.settings, services.redis, now_ms())
        except Exception as exc:  # noqa: BLE001 (a scrape must never fail on data quality)
            log.warning("metrics: data quality unavailable: %s", type(exc).__name__)
            return
        window = f" over the last {services.settings.dq_window_s} s"
        records = GaugeMetricFamily("instore_dq_records", "records per source topic" + window,
                                    labels=["topic"])
        dead = GaugeMetricFamily("instore_dq_dead_letters",
                                 "dead letters per source topic and reason" + window,
                                 labels=["topic", "reason"])
        share = GaugeMetricFamily("instore_dq_dead_letter_share",
                                  "dead letters / records per source topic" + window,
                                  labels=["topic"])
        over = GaugeMetricFamily("instore_dq_degraded",
                                 "1 when the topic's dead-letter share is over its threshold",
                                 labels=["topic"])
        for topic, entry in sorted(report["topics"].items()):
            records.add_metric([topic], float(entry["records"]))
            share.add_metric([topic], float(entry["dead_letter_share"]))
            over.add_metric([topic], 1.0 if entry["degraded"] else 0.0)
            for reason, n in sorted(entry["reasons"].items()):
                dead.add_metric([topic, reason], float(n))
        positions = GaugeMetricFamily("instore_dq_positions",
                                      "late and out-of-order positions" + window, labels=["kind"])
        positions.add_metric(["late"], float(report["late_positions"]))
        positions.add_metric(["out_of_order"], float(report["out_of_order_positions"]))
        yield from (records, dead, share, over, positions)


def make_registry(services_of: object) -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry()
    registry.register(PipelineCollector(services_of))
    requests = Counter("instore_api_requests", "API requests by route template and status",
                       ["method", "route", "status"], registry=registry)
    return registry, requests
