"""The ksqlDB REST client: a ``ksql.KSQLAPI`` (ksql-python-ng) for the configured endpoint, and
the two errors every ``instore ksql`` command turns into one sentence.

Target: ``KSQLDB_URL`` (+ ``KSQLDB_API_KEY``/``KSQLDB_API_SECRET`` for Confluent Cloud); unset =
the local endpoint. ksql-python-ng 0.29.0.1 passes ``cert=`` to httpx calls that httpx 0.28 no
longer accepts, so the client's transport is swapped for ``transport.CompatAPI`` (same requests,
same bodies).
"""

from __future__ import annotations

import json
from typing import Any

from instore.errors import InstoreError
from instore.settings import Settings, get_settings


class KsqlCommandError(InstoreError, RuntimeError):
    """ksqlDB refused a statement (the message is ksqlDB's)."""


class KsqlUnavailable(InstoreError, ConnectionError):
    """No ksqlDB endpoint answers (an OSError: the commands print it as one sentence)."""


def unavailable(target: str, exc: Exception) -> KsqlUnavailable:
    """The one sentence for an endpoint at ``target`` that did not answer."""
    return KsqlUnavailable(
        f"no ksqlDB endpoint answers at {target} ({type(exc).__name__}): start the local "
        "one with `instore ksql serve` (or `instore up`), or set KSQLDB_URL")


def make_client(settings: Settings | None = None, url: str | None = None) -> Any:
    """A ``ksql.KSQLAPI`` for the configured endpoint (compatible with httpx 0.28); a
    connection that fails raises :class:`KsqlUnavailable` with one sentence."""
    from ksql.client import KSQLAPI  # noqa: PLC0415

    from instore.commands.ksql.transport import CompatAPI  # noqa: PLC0415

    settings = settings or get_settings()
    target = (url or settings.ksqldb_address).rstrip("/")
    key = settings.ksqldb_api_key
    secret = settings.ksqldb_api_secret.get_secret_value() if settings.ksqldb_api_secret else None
    client = KSQLAPI(target, check_version=False, api_key=key, secret=secret, timeout=60)
    client.sa = CompatAPI(target, api_key=key, secret=secret, timeout=60)
    return client


def run_ksql(client: Any, sql: str, props: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One request to ``/ksql``; a refused statement raises :class:`KsqlCommandError`."""
    from ksql.errors import KSQLError  # noqa: PLC0415

    try:
        return client.ksql(sql, stream_properties=props or None)
    except KSQLError as exc:
        raise KsqlCommandError(exc.msg) from None


def split_schema(schema: str) -> list[str]:
    """The columns of a query header's ``schema`` (``a INT, b MAP<STRING, INT>``), split at
    its top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in schema:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def parse_line(line: str) -> dict[str, Any] | None:
    """One object of a streamed query answer (a JSON array written a line at a time); None
    for a line that holds none."""
    s = line.strip().lstrip("[").lstrip(",").rstrip(",").rstrip("]").strip()
    if not s:
        return None
    try:
        v = json.loads(s)
    except json.JSONDecodeError:
        return None
    return v if isinstance(v, dict) else None
