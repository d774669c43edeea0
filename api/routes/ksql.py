"""ksqlDB for the analyst (analyst key): statements, queries streamed as NDJSON, the streams
and tables with their columns, and the SQL page (``/ksql/editor``) that uses them. The API
calls the configured ksqlDB (``api.ksql_proxy``); the page never reaches it directly."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Analyst, ServicesDep
from api.ksql_proxy import (
    NDJSON,
    KsqlProxy,
    KsqlProxyError,
    KsqlRejected,
    KsqlUnreachable,
    TooManyPushQueries,
)

router = APIRouter(prefix="/ksql", tags=["ksql"])
PAGE = Path(__file__).resolve().parents[1] / "static" / "sql.html"
_create_lock = threading.Lock()
Property = str | int | float | bool

KSQL_ERROR = {"description": "ksqlDB's error, as ksqlDB reports it "
                             "(`{\"@type\", \"error_code\", \"message\"}`)"}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: KSQL_ERROR,
    429: {"description": "this API process already runs the most push queries it runs at once"},
    502: {"description": "ksqlDB failed, or refused the API's ksqlDB credentials "
                         "(ksqlDB's error shape)"},
    503: {"description": "no ksqlDB endpoint answers at the configured address"},
}


class Statements(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ksql": "SHOW STREAMS;"}]})
    ksql: str = Field(min_length=1, max_length=100_000,
                      description="one or more statements, each ending with ';'")
    streamsProperties: dict[str, Property] = Field(  # noqa: N815 - ksqlDB's field name
        default_factory=dict, description="e.g. {\"auto.offset.reset\": \"earliest\"}")


class QueryRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={
        "examples": [{"sql": "SELECT * FROM NEARBY_CUSTOMERS EMIT CHANGES LIMIT 5;"}]})
    sql: str = Field(min_length=1, max_length=100_000,
                     description="one SELECT: a pull query, or a push query (EMIT CHANGES)")
    properties: dict[str, Property] = Field(
        default_factory=dict, description="e.g. {\"auto.offset.reset\": \"earliest\"}")


class Column(BaseModel):
    name: str
    type: str = Field(description="ksqlDB's type, e.g. STRING, ARRAY<DOUBLE>")
    key: bool


class Source(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    type: str = Field(description="STREAM or TABLE")
    topic: str | None = None
    columns: list[Column]


def proxy_of(request: Request, services: ServicesDep) -> KsqlProxy:
    """One proxy per app (it counts the running push queries)."""
    state = request.app.state
    with _create_lock:
        if getattr(state, "ksql_proxy", None) is None:
            state.ksql_proxy = KsqlProxy(services.settings)
    return state.ksql_proxy  # type: ignore[no-any-return]


Proxy = Annotated[KsqlProxy, Depends(proxy_of)]


def _answer(exc: KsqlProxyError) -> JSONResponse:
    if isinstance(exc, KsqlRejected):
        status = exc.status if 400 <= exc.status < 500 else 502
        return JSONResponse(exc.body, status_code=status)
    if isinstance(exc, TooManyPushQueries):
        return JSONResponse({"detail": str(exc)}, status_code=429)
    if isinstance(exc, KsqlUnreachable):
        return JSONResponse({"detail": str(exc)}, status_code=503)
    return JSONResponse({"detail": str(exc)}, status_code=502)


@router.post("", responses=ERRORS)
async def statements(body: Statements, _role: Analyst, proxy: Proxy) -> Any:
    """Statements (CREATE, DROP, SHOW, DESCRIBE, EXPLAIN, INSERT, TERMINATE...) sent to
    ksqlDB's `/ksql`: its list of entities, one per statement. Queries go to `/ksql/query`."""
    try:
        return await proxy.execute(body.ksql, dict(body.streamsProperties))
    except KsqlProxyError as exc:
        return _answer(exc)


@router.post("/query", responses={
    **ERRORS,
    200: {"description": "NDJSON, one object a line: `{\"header\": {queryId, columnNames, "
                         "columnTypes, push}}`, then `{\"row\": [...]}` per row, then "
                         "`{\"end\": {\"rows\": n}}` or `{\"error\": <ksqlDB's error>}`. A push "
                         "query runs until LIMIT or until the caller closes the response.",
          "content": {NDJSON: {}}}})
async def query(body: QueryRequest, _role: Analyst, proxy: Proxy) -> Response:
    """A pull or push query through ksqlDB's `/query-stream`, streamed back as it runs."""
    try:
        stream = await proxy.open_query(body.sql, dict(body.properties))
    except KsqlProxyError as exc:
        return _answer(exc)
    return StreamingResponse(stream.ndjson(), media_type=NDJSON,
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/sources", response_model=list[Source], responses=ERRORS)
async def sources(_role: Analyst, proxy: Proxy) -> Any:
    """The streams and tables (SHOW STREAMS, SHOW TABLES) with their columns (DESCRIBE)."""
    try:
        return await proxy.sources()
    except KsqlProxyError as exc:
        return _answer(exc)


@router.get("/editor", include_in_schema=False)
def editor_page() -> FileResponse:
    """The SQL page (its calls need the analyst key)."""
    return FileResponse(PAGE, headers={"Cache-Control": "no-cache"})
