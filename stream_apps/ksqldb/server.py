"""ksqlDB's REST API over the engine (Starlette on hypercorn: HTTP/1.1 and HTTP/2).

``/info``, ``/healthcheck``, ``/ksql``, ``/query`` (chunked JSON array), ``/query-stream``
(HTTP/2 or HTTP/1.1, ``application/vnd.ksqlapi.delimited.v1`` or ``application/json``),
``/inserts-stream``, ``/close-query``, ``/status``. Errors are ksqlDB's
``{"@type", "error_code", "message"}``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from instore.settings import LOOPBACK, Settings
from stream_apps.ksqldb.engine import Engine
from stream_apps.ksqldb.entities import VERSION, schema_string
from stream_apps.ksqldb.errors import (
    BAD_REQUEST,
    NOT_FOUND,
    SERVER_ERROR,
    KsqlError,
)
from stream_apps.ksqldb.syntax import Query, locate, parse

log = logging.getLogger(__name__)

KSQL_JSON = "application/vnd.ksql.v1+json"
DELIMITED = "application/vnd.ksqlapi.delimited.v1"


def _json(body: Any, status: int = 200, media: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media)


def error_body(exc: KsqlError, statement: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"@type": exc.error_type, "error_code": exc.code, "message": exc.message}
    if exc.error_type == "statement_error":
        body["statementText"] = (
            statement if statement is not None else getattr(exc, "statement", "")
        )
        body["entities"] = getattr(exc, "entities", [])
    return body


def _error(exc: KsqlError, statement: str | None = None) -> Response:
    status = 404 if exc.code == NOT_FOUND else 500 if exc.code >= SERVER_ERROR else 400
    return _json(error_body(exc, statement), status)


def _bad_request(message: str) -> Response:
    return _json({"@type": "generic_error", "error_code": BAD_REQUEST, "message": message}, 400)


async def _body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def build_app(engine: Engine) -> Starlette:
    api = KsqlApi(engine)
    routes = [
        Route("/info", api.info, methods=["GET"]),
        Route("/healthcheck", api.healthcheck, methods=["GET"]),
        Route("/ksql", api.ksql, methods=["POST"]),
        Route("/query", api.query, methods=["POST"]),
        Route("/query-stream", api.query_stream, methods=["POST"]),
        Route("/close-query", api.close_query, methods=["POST"]),
        Route("/inserts-stream", api.inserts_stream, methods=["POST"]),
        Route("/status", api.status, methods=["GET"]),
        Route("/status/{type}/{entity}/{action}", api.status_one, methods=["GET"]),
        Route("/ksql/terminate", api.terminate, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.engine = engine
    return app


class KsqlApi:
    """The endpoints of ksqlDB's REST API over one engine; the engine's work runs in the
    thread pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- server -----------------------------------------------------------------------------------
    async def info(self, _request: Request) -> Response:
        return _json(
            {
                "KsqlServerInfo": {
                    "version": VERSION,
                    "kafkaClusterId": "instore-embedded",
                    "ksqlServiceId": self.engine.service_id,
                    "serverStatus": "RUNNING",
                }
            }
        )

    async def healthcheck(self, _request: Request) -> Response:
        def check() -> bool:
            try:
                self.engine.list_topics()
                return True
            except Exception:  # noqa: BLE001 - any broker failure means unhealthy
                return False

        kafka_ok = await run_in_threadpool(check)
        body = {
            "isHealthy": kafka_ok,
            "details": {"metastore": {"isHealthy": True}, "kafka": {"isHealthy": kafka_ok}},
            "ksqlServiceId": self.engine.service_id,
        }
        return _json(body, 200 if kafka_ok else 503)

    async def status(self, _request: Request) -> Response:
        statuses = self.engine.command_status
        return _json({"commandStatuses": {k: v["status"] for k, v in statuses.items()}})

    async def status_one(self, request: Request) -> Response:
        p = request.path_params
        cid = f"{p['type']}/{p['entity']}/{p['action']}"
        st = self.engine.command_status.get(cid)
        if st is None:
            return _json(
                {
                    "@type": "generic_error",
                    "error_code": NOT_FOUND,
                    "message": f"Command not found: {cid}",
                },
                404,
            )
        return _json(st)

    # -- statements -----------------------------------------------------------------------------
    async def ksql(self, request: Request) -> Response:
        body = await _body(request)
        if body is None or not isinstance(body.get("ksql"), str):
            return _bad_request("Request body must be a JSON object with a 'ksql' string")
        text = body["ksql"]
        props = body.get("streamsProperties") or {}
        try:
            entities = await run_in_threadpool(self.engine.execute, text, props)
        except KsqlError as exc:
            return _error(exc, getattr(exc, "statement", text))
        except Exception as exc:
            log.exception("statement failed")
            return _json(
                {
                    "@type": "generic_error",
                    "error_code": SERVER_ERROR,
                    "message": f"{type(exc).__name__}: {exc}",
                },
                500,
            )
        return _json(entities, media=KSQL_JSON)

    async def terminate(self, request: Request) -> Response:
        await _body(request)
        try:
            await run_in_threadpool(self.engine.execute, "TERMINATE ALL;", {})
        except KsqlError as exc:
            return _error(exc)
        return _json({"status": "SUCCESS"})

    async def inserts_stream(self, request: Request) -> Response:
        raw = (await request.body()).decode("utf-8", errors="replace")
        lines = [line for line in raw.splitlines() if line.strip()]
        try:
            head = orjson.loads(lines[0]) if lines else None
            rows = [orjson.loads(line) for line in lines[1:]]
        except orjson.JSONDecodeError:
            return _bad_request("Invalid JSON in the request body")
        if not isinstance(head, dict) or not isinstance(head.get("target"), str) or \
                not all(isinstance(r, dict) for r in rows):
            return _bad_request('The first line must be {"target": "<stream>"}, then one JSON '
                                "object per row")
        target = head["target"]
        if target.upper() in self.engine.sources:
            target = target.upper()
        try:
            acks = await run_in_threadpool(self.engine.insert_rows, target, rows)
        except KsqlError as exc:
            return _error(exc, "")
        body = b"".join(orjson.dumps(a) + b"\n" for a in acks)
        return Response(body, media_type=DELIMITED)

    # -- queries --------------------------------------------------------------------------------
    async def query(self, request: Request) -> Response:
        """/query: a JSON array streamed one element per line (header, rows, final message)."""
        body = await _body(request)
        if body is None or not isinstance(body.get("ksql"), str):
            return _bad_request("Request body must be a JSON object with a 'ksql' string")
        text = body["ksql"]
        out: queue.Queue[Any] = queue.Queue()
        try:
            header = await run_in_threadpool(
                self._start_query, text, body.get("streamsProperties") or {}, out
            )
        except KsqlError as exc:
            exc.message = locate(exc.message, text)
            return _error(exc, text)
        rows = self._rows(out, header)
        return StreamingResponse(_query_body(header, rows), media_type="application/json")

    async def query_stream(self, request: Request) -> Response:
        """/query-stream: a header line, then one line per row (a JSON array when asked for
        ``application/json``)."""
        body = await _body(request)
        if body is None or not isinstance(body.get("sql"), str):
            return _bad_request("Request body must be a JSON object with a 'sql' string")
        text = body["sql"]
        accept = request.headers.get("accept", "")
        as_json = "application/json" in accept and DELIMITED not in accept
        out: queue.Queue[Any] = queue.Queue()
        try:
            header = await run_in_threadpool(
                self._start_query, text, body.get("properties") or {}, out
            )
        except KsqlError as exc:
            exc.message = locate(exc.message, text)
            return _error(exc, text)
        rows = self._rows(out, header)
        return StreamingResponse(
            _query_stream_body(header, rows, as_json),
            media_type="application/json" if as_json else DELIMITED,
        )

    async def close_query(self, request: Request) -> Response:
        body = await _body(request)
        if body is None or not isinstance(body.get("queryId"), str):
            return _bad_request("Request body must be a JSON object with a 'queryId' string")
        ok = await run_in_threadpool(self.engine.close_transient, body["queryId"])
        if not ok:
            return _bad_request(f"No query with id {body['queryId']}")
        return _json({})

    def _start_query(self, text: str, props: dict[str, Any], out: queue.Queue[Any]) -> dict[str, Any]:
        """Run a pull query to completion, or start a push query; returns the header."""
        engine = self.engine
        select = engine.parse_query(text)
        if not select.emit_changes:
            res = engine.pull(select)
            for row in res.rows:
                out.put(("row", row))
            out.put(("end", None))
            return {"queryId": res.query_id, "columns": res.columns, "pull": True}

        def on_row(values: list[Any] | None, tomb: list[Any] | None) -> None:
            if values is not None:
                out.put(("row", values))
            else:
                out.put(("tombstone", tomb))

        qid, columns, runner = engine.push(select, props, text, on_row)
        return {"queryId": qid, "columns": columns, "pull": False, "runner": runner}

    async def _rows(
        self, out: queue.Queue[Any], header: dict[str, Any]
    ) -> AsyncIterator[tuple[str, Any]]:
        """("row" | "tombstone", values), ("error", message) or ("end", message) until the
        query ends; a push query is released when the client goes away."""
        runner = header.get("runner")
        try:
            while True:
                try:
                    item = out.get_nowait()
                except queue.Empty:
                    if runner is not None and not runner.alive:
                        if runner.state == "ERROR":
                            yield ("error", runner.error)
                        elif runner.limit_reached:
                            yield ("end", "Limit Reached")
                        return
                    # a client that goes away cancels this generator (Starlette listens for
                    # http.disconnect while streaming)
                    await asyncio.sleep(0.02)
                    continue
                if item[0] == "end":
                    return
                yield item
        finally:
            # may run in a cancelled task (client gone): nothing here may await
            if runner is not None:
                self.engine.release_transient(header["queryId"])


def _error_message(message: Any) -> dict[str, Any]:
    return {"@type": "generic_error", "error_code": SERVER_ERROR, "message": message}


async def _query_body(
    header: dict[str, Any], rows: AsyncIterator[tuple[str, Any]]
) -> AsyncIterator[bytes]:
    head = {"header": {"queryId": header["queryId"], "schema": schema_string(header["columns"])}}
    # One complete JSON value per line, so a client can act on each line as it comes.
    yield b"[" + orjson.dumps(head) + b"\n"
    async for kind, item in rows:
        if kind == "row":
            yield b"," + orjson.dumps({"row": {"columns": item}}) + b"\n"
        elif kind == "tombstone":
            yield b"," + orjson.dumps({"row": {"columns": item, "tombstone": True}}) + b"\n"
        elif kind == "error":
            yield b"," + orjson.dumps({"errorMessage": _error_message(item)}) + b"\n"
        elif kind == "end":
            yield b"," + orjson.dumps({"finalMessage": item}) + b"\n"
    yield b"]\n"


async def _query_stream_body(
    header: dict[str, Any], rows: AsyncIterator[tuple[str, Any]], as_json: bool
) -> AsyncIterator[bytes]:
    head = {
        "queryId": header["queryId"],
        "columnNames": [n for n, _ in header["columns"]],
        "columnTypes": [str(t) for _, t in header["columns"]],
    }
    yield (b"[" if as_json else b"") + orjson.dumps(head) + b"\n"
    sep = b"," if as_json else b""
    async for kind, item in rows:
        if kind in ("row", "tombstone"):
            yield sep + orjson.dumps(item) + b"\n"
        elif kind == "error":
            yield sep + orjson.dumps(_error_message(item)) + b"\n"
    if as_json:
        yield b"]\n"


def is_query(text: str) -> bool:
    try:
        stmts = parse(text)
    except KsqlError:
        return False
    return len(stmts) == 1 and isinstance(stmts[0], Query)


class EndpointServer:
    """The REST API on hypercorn: HTTP/1.1 and HTTP/2 (cleartext, prior knowledge, as
    ksqlDB's clients use for /query-stream), in a background thread or in the foreground."""

    def __init__(self, engine: Engine, host: str, port: int) -> None:
        from hypercorn.config import Config  # noqa: PLC0415

        self.app = build_app(engine)
        self.config = Config()
        self.config.bind = [f"{host}:{port}"]
        self.config.accesslog = None
        self.config.loglevel = "WARNING"
        self.config.graceful_timeout = 2.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def _serve(self) -> None:
        from hypercorn.asyncio import serve as hypercorn_serve  # noqa: PLC0415

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await hypercorn_serve(self.app, self.config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

    def run(self) -> None:
        """Serve in the foreground until SIGINT/SIGTERM."""

        async def main() -> None:
            task = asyncio.create_task(self._serve())
            while self._stop is None:
                await asyncio.sleep(0.01)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stop.set)

            def quiet(lp: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
                # connections still open at shutdown are cancelled: not an error
                if not isinstance(ctx.get("exception"), asyncio.CancelledError):
                    lp.default_exception_handler(ctx)

            loop.set_exception_handler(quiet)
            await task

        asyncio.run(main())

    def start(self) -> None:
        """Serve in a daemon thread (tests)."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True,
                                        name="ksql-endpoint")
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the endpoint until SIGINT/SIGTERM (``instore ksql serve``)."""
    from instore.kafka import wait_for_broker  # noqa: PLC0415

    wait_for_broker(settings, timeout_s=60)
    started = time.monotonic()
    engine = Engine(settings)
    h = host or LOOPBACK
    p = port or settings.ksql_port
    log.info("ksqlDB-compatible endpoint listening on http://%s:%d (%d sources, %d queries)",
             h, p, len(engine.sources), len(engine.queries))
    try:
        EndpointServer(engine, h, p).run()
    finally:
        engine.close()
        log.info("ksqlDB-compatible endpoint stopped after %.0f s", time.monotonic() - started)
