"""The analyst's ksqlDB, through the API: statements to ksqlDB's ``/ksql``, queries to its
``/query-stream`` streamed back as NDJSON, the streams and tables with their columns.

The browser never talks to ksqlDB (the local endpoint listens on loopback, and the Confluent
Cloud key must not reach a page): :class:`KsqlProxy` does, with the settings' address and key.
A push query holds one of ``MAX_PUSH_QUERIES`` slots of this API process until it ends: LIMIT,
an error, or the caller going away (then ksqlDB's ``/close-query`` ends it upstream and the
connection is closed).

Errors keep ksqlDB's shape (``{"@type", "error_code", "message"}``) in :class:`KsqlRejected`;
an endpoint that does not answer is :class:`KsqlUnreachable` (one sentence).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx

from instore.errors import InstoreError
from instore.settings import Settings

MAX_PUSH_QUERIES = 4  # push queries running at once through one API process
KSQL_JSON = "application/vnd.ksql.v1+json"
DELIMITED = "application/vnd.ksqlapi.delimited.v1"
NDJSON = "application/x-ndjson"
TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0

# what hides an EMIT CHANGES from a plain search: string literals, quoted names, comments
_NOT_CODE = re.compile(r"'(?:[^']|'')*'|`(?:[^`]|``)*`|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/",
                       re.S)
_EMIT_CHANGES = re.compile(r"\bEMIT\s+CHANGES\b", re.I)


class KsqlProxyError(InstoreError):
    """Base of what the proxy answers instead of a result."""


class KsqlUnreachable(KsqlProxyError):
    """No ksqlDB endpoint answers at the configured address."""


class TooManyPushQueries(KsqlProxyError):
    """Every push-query slot of this API process is taken."""


class KsqlRejected(KsqlProxyError):
    """ksqlDB answered with an error: ``body`` is its JSON (``@type``, ``error_code``,
    ``message``), ``status`` its HTTP status."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("message", "")))
        self.status = status
        self.body = body


def is_push(sql: str) -> bool:
    """Whether a query is a push query (``EMIT CHANGES`` outside strings and comments)."""
    return bool(_EMIT_CHANGES.search(_NOT_CODE.sub(" ", sql)))


def type_name(schema: dict[str, Any]) -> str:
    """ksqlDB's type text of a DESCRIBE field schema (``ARRAY<STRING>``, ``STRUCT<A INT>``)."""
    kind = str(schema.get("type", "?"))
    if kind == "ARRAY" and isinstance(schema.get("memberSchema"), dict):
        return f"ARRAY<{type_name(schema['memberSchema'])}>"
    if kind == "MAP" and isinstance(schema.get("memberSchema"), dict):
        return f"MAP<STRING, {type_name(schema['memberSchema'])}>"
    if kind == "STRUCT" and isinstance(schema.get("fields"), list):
        inner = ", ".join(f"{f.get('name')} {type_name(f.get('schema') or {})}"
                          for f in schema["fields"])
        return f"STRUCT<{inner}>"
    return kind


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _error_of(response: httpx.Response, raw: bytes) -> KsqlRejected:
    """ksqlDB's error body, or one in its shape when the answer is not ksqlDB's JSON."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    status = response.status_code
    if status in (401, 403):  # ksqlDB refused the API's credentials, not the caller's
        message = (f"ksqlDB refused the API's credentials ({status}): check KSQLDB_API_KEY and "
                   "KSQLDB_API_SECRET")
        return KsqlRejected(502, {"@type": "generic_error", "error_code": 50200,
                                  "message": message})
    if isinstance(body, dict) and "message" in body:
        return KsqlRejected(status, body)
    text = raw.decode("utf-8", "replace").strip()[:500] or response.reason_phrase
    return KsqlRejected(status, {"@type": "generic_error", "error_code": status * 100,
                                 "message": text})


class _Slots:
    """A counter of running push queries, shared by the requests of one process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.size:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used = max(0, self.used - 1)


class QueryStream:
    """A query started on ksqlDB's ``/query-stream``: its header was read; ``ndjson()`` yields
    the lines the API sends (``{"header"}``, ``{"row"}``..., then ``{"end"}`` or
    ``{"error"}``) and ends the query upstream when it stops early."""

    def __init__(self, proxy: KsqlProxy, client: httpx.AsyncClient, response: httpx.Response,
                 lines: AsyncIterator[str], header: dict[str, Any], push: bool) -> None:
        self._proxy = proxy
        self._client = client
        self._response = response
        self._lines = lines
        self.header = header
        self.push = push
        self.query_id = header.get("queryId")
        self.rows = 0
        self._finished = False  # ksqlDB ended it (LIMIT, pull done, error)
        self._closed = False

    async def ndjson(self) -> AsyncIterator[bytes]:
        def line(item: dict[str, Any]) -> bytes:
            return json.dumps(item, separators=(",", ":")).encode() + b"\n"

        try:
            yield line({"header": {"queryId": self.query_id,
                                   "columnNames": self.header.get("columnNames", []),
                                   "columnTypes": self.header.get("columnTypes", []),
                                   "push": self.push}})
            async for text in self._lines:
                if not text.strip():
                    continue
                try:
                    item = json.loads(text)
                except ValueError:
                    item = {"@type": "generic_error", "error_code": 50000,
                            "message": f"unreadable line from ksqlDB: {text[:200]}"}
                if isinstance(item, list):
                    self.rows += 1
                    yield line({"row": item})
                elif isinstance(item, dict) and ("message" in item or "@type" in item):
                    self._finished = True
                    yield line({"error": item})
                    return
            self._finished = True
            yield line({"end": {"rows": self.rows}})
        except httpx.TransportError as exc:
            self._finished = True
            yield line({"error": {"@type": "generic_error", "error_code": 50000,
                                  "message": f"the connection to ksqlDB broke ({exc})"}})
        finally:
            # the caller may be gone (this generator cancelled): shield the clean-up
            with anyio.CancelScope(shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        """End the query upstream (``/close-query`` if it still runs), close the connection and
        give the push slot back; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.push and not self._finished and self.query_id:
                with anyio.move_on_after(CLOSE_TIMEOUT_S):
                    try:
                        await self._client.post("/close-query", json={"queryId": self.query_id},
                                                timeout=CLOSE_TIMEOUT_S)
                    except httpx.HTTPError:
                        pass  # closing the connection below ends it as well
            await self._response.aclose()
            await self._client.aclose()
        finally:
            if self.push:
                self._proxy.slots.give()


class KsqlProxy:
    """Calls the configured ksqlDB (``Settings.ksqldb_address``, with the Cloud key if set)."""

    def __init__(self, settings: Settings, max_push: int = MAX_PUSH_QUERIES,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.address = settings.ksqldb_address.rstrip("/")
        self._auth: tuple[str, str] | None = None
        if settings.ksqldb_api_key and settings.ksqldb_api_secret:
            self._auth = (settings.ksqldb_api_key, settings.ksqldb_api_secret.get_secret_value())
        self.slots = _Slots(max_push)
        self._transport = transport

    def _client(self, read_timeout: float | None = TIMEOUT_S) -> httpx.AsyncClient:
        # HTTP/2 where TLS lets it be negotiated (Confluent Cloud); the local endpoint speaks
        # both, and HTTP/1.1 over cleartext
        return httpx.AsyncClient(base_url=self.address, auth=self._auth,
                                 http2=self.address.startswith("https:"),
                                 timeout=httpx.Timeout(TIMEOUT_S, read=read_timeout),
                                 transport=self._transport)

    def _unreachable(self, exc: Exception) -> KsqlUnreachable:
        return KsqlUnreachable(
            f"no ksqlDB endpoint answers at {self.address} ({type(exc).__name__}): start the "
            "local one with `instore up` (or `instore ksql serve`), or set KSQLDB_URL")

    async def execute(self, ksql: str, properties: dict[str, Any] | None = None
                      ) -> list[dict[str, Any]]:
        """Statements through ``/ksql``: ksqlDB's list of entities, one per statement."""
        async with self._client() as client:
            try:
                res = await client.post("/ksql", headers={"Accept": KSQL_JSON},
                                        json={"ksql": ksql, "streamsProperties": properties or {}})
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None
        if res.status_code != 200:
            raise _error_of(res, res.content)
        try:
            body = res.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise KsqlRejected(502, {"@type": "generic_error", "error_code": 50200,
                                     "message": "ksqlDB's answer is not a list of entities"})
        return body

    async def sources(self) -> list[dict[str, Any]]:
        """The streams and tables (SHOW STREAMS, SHOW TABLES), each with its columns
        (DESCRIBE): ``{name, type, topic, keyFormat, valueFormat, isWindowed, columns}``."""
        listed = await self.execute("SHOW STREAMS; SHOW TABLES;")
        found: dict[str, dict[str, Any]] = {}
        for entity in listed:
            for kind in ("streams", "tables"):
                for item in entity.get(kind) or []:
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        found[item["name"]] = {**item, "columns": []}
        if not found:
            return []
        try:
            described = await self.execute(" ".join(f"DESCRIBE {_quoted(n)};" for n in found))
        except KsqlRejected:  # one went away meanwhile: describe the others one by one
            described = []
            for name in found:
                try:
                    described.extend(await self.execute(f"DESCRIBE {_quoted(name)};"))
                except KsqlRejected:
                    continue
        for entity in described:
            desc = entity.get("sourceDescription")
            if not isinstance(desc, dict) or desc.get("name") not in found:
                continue
            found[desc["name"]]["columns"] = [
                {"name": f.get("name"), "type": type_name(f.get("schema") or {}),
                 "key": f.get("type") == "KEY"}
                for f in desc.get("fields") or [] if isinstance(f, dict)
            ]
        return sorted(found.values(), key=lambda s: (s.get("type", ""), s["name"]))

    async def open_query(self, sql: str, properties: dict[str, Any] | None = None
                         ) -> QueryStream:
        """Start a query on ``/query-stream`` and read its header; ksqlDB's refusal raises
        :class:`KsqlRejected` before anything is streamed."""
        push = is_push(sql)
        if push and not self.slots.take():
            msg = (f"{self.slots.size} push queries already run through this API (the most it "
                   "runs at once): stop one and run this again")
            raise TooManyPushQueries(msg)
        client = self._client(read_timeout=None)  # a push query may be quiet for hours
        response: httpx.Response | None = None
        try:
            request = client.build_request("POST", "/query-stream", headers={"Accept": DELIMITED},
                                           json={"sql": sql, "properties": properties or {}})
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None
            if response.status_code != 200:
                raise _error_of(response, await response.aread())
            lines = response.aiter_lines()
            header: Any = None
            try:
                async for text in lines:
                    if text.strip():
                        header = json.loads(text)
                        break
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None
            except ValueError:
                header = None
            if isinstance(header, dict) and "message" in header and "columnNames" not in header:
                raise KsqlRejected(400, header)
            if not isinstance(header, dict):
                raise KsqlRejected(502, {"@type": "generic_error", "error_code": 50200,
                                         "message": "ksqlDB ended the query without a header"})
        except BaseException:
            if response is not None:
                await response.aclose()
            await client.aclose()
            if push:
                self.slots.give()
            raise
        return QueryStream(self, client, response, lines, header, push)
