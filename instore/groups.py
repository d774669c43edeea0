"""Every Kafka consumer group id of the project, defined once.

The parts that consume with a group import their id from here, and so do the readers of lag
(``instore status``, ``/readyz``, ``GET /lineage``). Readers without a group (the worker's and
the API's replicated views of the compacted tables, the push sink's consent reader) commit
nothing and have no lag to read.
"""

from __future__ import annotations

from instore.settings import Settings

PUSH_SINK = "instore-push-sink"  # mobile_push/sink.py: offers, kiosk_interactions
ARCHIVER = "instore-archiver"  # the archiver: the streams -> Parquet


def worker(settings: Settings) -> str:
    """The Faust worker's group: its app id (``INSTORE_APP_ID``); every agent of it commits there."""
    return settings.app_id


def ksqldb_query(service_id: str, query_id: str) -> str:
    """The group of a ksqlDB persistent query: ``_confluent-ksql-<service id>query_<QUERY_ID>``
    (the service id ends with its own separator, e.g. ``default_``; the local endpoint's is
    ``default_``)."""
    return f"_confluent-ksql-{service_id}query_{query_id}"


def ksqldb_transient(service_id: str, query_id: str, instance: int) -> str:
    """The group of one run of a ksqlDB push (transient) query:
    ``_confluent-ksql-<service id>transient_<query id>_<instance>``, new for every run (nothing
    it commits is read again)."""
    return f"_confluent-ksql-{service_id}transient_{query_id}_{instance}"
