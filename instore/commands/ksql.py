"""`instore ksql ...`: ksqlDB: migrations, queries, and the local ksqlDB-compatible endpoint.

The client is ksql-python-ng (imported as ``ksql``). Its 0.29.0.1 release passes ``cert=`` to
httpx calls that httpx 0.28 no longer accepts, so ``make_client`` wraps it with a small
compatible transport layer (same requests, same bodies). Target: ``KSQLDB_URL`` (+
``KSQLDB_API_KEY``/``KSQLDB_API_SECRET`` for Confluent Cloud); unset = the local endpoint.

Migrations follow Confluent's ksql-migrations tool: files ``V<6 digits>__<name>.sql``, history
in the ``MIGRATION_EVENTS`` stream and the ``MIGRATION_SCHEMA_VERSIONS`` table (one row per
version plus ``CURRENT``), states PENDING/RUNNING/MIGRATED/ERROR, checksum = MD5 of the file,
so either tool can continue what the other started.

After the migrations, ``migrate`` makes ksqlDB's NEARBY_CUSTOMERS writer follow
``NEARBY_ENGINE``: the query of ``ksql/nearby_writer/nearby_customers.sql`` runs when it is
``ksqldb`` and no query writes NEARBY_CUSTOMERS when it is ``faust`` (the Faust worker does).
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from instore.errors import InstoreError
from instore.settings import Settings, get_settings

app = typer.Typer(
    help="ksqlDB: migrations, queries, and the local ksqlDB-compatible endpoint.",
    no_args_is_help=True,
)
console = Console(stderr=True)
out = Console()

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = ROOT / "ksql" / "migrations"
SEED_DEMO_DIR = ROOT / "ksql" / "seed_demo"
# ksqlDB's NEARBY_CUSTOMERS writer: not a migration, started or terminated by `migrate` to
# follow NEARBY_ENGINE (one engine writes the topic).
NEARBY_WRITER_FILE = ROOT / "ksql" / "nearby_writer" / "nearby_customers.sql"
NEARBY_STREAM = "NEARBY_CUSTOMERS"
FILE_RE = re.compile(r"^V(\d{6})__(\w+)\.sql$")
EVENTS = "MIGRATION_EVENTS"
VERSIONS = "MIGRATION_SCHEMA_VERSIONS"
NONE_VERSION = "<none>"


class KsqlCommandError(InstoreError, RuntimeError):
    pass


# -- the client ---------------------------------------------------------------------------------


class KsqlUnavailable(InstoreError, ConnectionError):
    """No ksqlDB endpoint answers (an OSError: the commands print it as one sentence)."""


def make_client(settings: Settings | None = None, url: str | None = None) -> Any:
    """A ``ksql.KSQLAPI`` for the configured endpoint (compatible with httpx 0.28); a
    connection that fails raises :class:`KsqlUnavailable` with one sentence."""
    import httpx  # noqa: PLC0415
    from ksql.api import SimplifiedAPI  # noqa: PLC0415
    from ksql.client import KSQLAPI  # noqa: PLC0415

    settings = settings or get_settings()
    target = (url or settings.ksqldb_address).rstrip("/")
    key = settings.ksqldb_api_key
    secret = settings.ksqldb_api_secret.get_secret_value() if settings.ksqldb_api_secret else None

    def unavailable(exc: Exception) -> KsqlUnavailable:
        return KsqlUnavailable(
            f"no ksqlDB endpoint answers at {target} ({type(exc).__name__}): start the local "
            "one with `instore ksql serve` (or `instore up`), or set KSQLDB_URL")

    @contextmanager
    def reaching() -> Any:
        try:
            yield
        except httpx.TransportError as exc:
            raise unavailable(exc) from None

    class _CompatAPI(SimplifiedAPI):  # type: ignore[misc]
        """ksql-python-ng's API without the ``cert=`` argument httpx 0.28 rejects."""

        def _auth(self) -> Any:
            return (self.api_key, self.secret) if self.api_key and self.secret else None

        def get_request(self, endpoint: str) -> Any:
            with reaching():
                return httpx.get(
                    endpoint, headers=self.headers, auth=self._auth(), timeout=self.timeout
                )

        def _http1_request(
            self,
            endpoint: str,
            method: str = "POST",
            sql_string: str = "",
            stream_properties: Any = None,
            encoding: str = "utf-8",
        ) -> Any:
            sql_string = self._validate_sql_string(sql_string)
            body = {"ksql": sql_string, "streamsProperties": stream_properties or {}}
            with reaching():
                return httpx.request(
                    method.upper(),
                    f"{self.url}/{endpoint}",
                    content=json.dumps(body).encode(encoding),
                    headers=self.headers,
                    auth=self._auth(),
                    timeout=self.timeout,
                )

        @contextmanager
        def _http1_stream(
            self,
            endpoint: str,
            method: str = "POST",
            sql_string: str = "",
            stream_properties: Any = None,
            encoding: str = "utf-8",
        ) -> Any:
            sql_string = self._validate_sql_string(sql_string)
            body = {"ksql": sql_string, "streamsProperties": stream_properties or {}}
            with reaching(), httpx.stream(
                method.upper(),
                f"{self.url}/{endpoint}",
                content=json.dumps(body).encode(encoding),
                headers=self.headers,
                auth=self._auth(),
                timeout=httpx.Timeout(self.timeout, read=None),
            ) as response:
                yield response

        def close_query(self, query_id: str) -> bool:
            with reaching():
                r = httpx.post(
                    f"{self.url}/close-query",
                    json={"queryId": query_id},
                    auth=self._auth(),
                    timeout=self.timeout,
                )
            return r.status_code == 200

    client = KSQLAPI(target, check_version=False, api_key=key, secret=secret, timeout=60)
    client.sa = _CompatAPI(target, api_key=key, secret=secret, timeout=60)
    return client


def _ksql(client: Any, sql: str, props: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from ksql.errors import KSQLError  # noqa: PLC0415

    try:
        return client.ksql(sql, stream_properties=props or None)
    except KSQLError as exc:
        raise KsqlCommandError(exc.msg) from None


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def _unreachable(exc: Exception) -> typer.Exit:
    """One sentence for an endpoint that did not answer."""
    if isinstance(exc, KsqlUnavailable):
        return _fail(str(exc))
    return _fail(f"cannot reach ksqlDB at {get_settings().ksqldb_address} ({exc}); run "
                 "`instore up` or set KSQLDB_URL")


# -- migrations ---------------------------------------------------------------------------------


def migration_files(directory: Path) -> list[tuple[str, str, Path]]:
    """(version, name, path) in version order; version is the number without zero padding."""
    files = []
    for p in sorted(directory.glob("*.sql")):
        m = FILE_RE.match(p.name)
        if m is None:
            continue
        files.append((str(int(m.group(1))), m.group(2).replace("_", " "), p))
    return sorted(files, key=lambda f: int(f[0]))


def checksum(path: Path) -> str:
    """The file's checksum as ksql-migrations writes it: the raw MD5 digest read as UTF-8
    (``new String(md5, UTF_8)`` in its MigrationsDirectoryUtil), so both tools agree."""
    digest = hashlib.md5(path.read_bytes()).digest()  # noqa: S324 - the tool's checksum is MD5
    return digest.decode("utf-8", errors="replace")


def ensure_metadata(client: Any) -> None:
    """Create MIGRATION_EVENTS / MIGRATION_SCHEMA_VERSIONS as `ksql-migrations` does."""
    listed = _ksql(client, "SHOW STREAMS;")[0]["streams"]
    if not any(s["name"] == EVENTS for s in listed):
        _ksql(
            client,
            f"""CREATE STREAM {EVENTS} (
  version_key  STRING KEY,
  version      STRING,
  name         STRING,
  state        STRING,
  checksum     STRING,
  started_on   STRING,
  completed_on STRING,
  previous     STRING,
  error_reason STRING
) WITH (KAFKA_TOPIC='default_ksql_{EVENTS}', VALUE_FORMAT='JSON', PARTITIONS=1, REPLICAS=1);""",
        )
    tables = _ksql(client, "SHOW TABLES;")[0]["tables"]
    if not any(s["name"] == VERSIONS for s in tables):
        _ksql(
            client,
            f"""CREATE TABLE {VERSIONS}
  WITH (KAFKA_TOPIC='default_ksql_{VERSIONS}')
  AS SELECT
    version_key,
    latest_by_offset(version) AS version,
    latest_by_offset(name) AS name,
    latest_by_offset(state) AS state,
    latest_by_offset(checksum) AS checksum,
    latest_by_offset(started_on) AS started_on,
    latest_by_offset(completed_on) AS completed_on,
    latest_by_offset(previous) AS previous,
    latest_by_offset(error_reason) AS error_reason
  FROM {EVENTS}
  GROUP BY version_key;""",  # noqa: S608 - constant names
            {"auto.offset.reset": "earliest"},
        )


def applied_versions(client: Any) -> dict[str, dict[str, Any]]:
    """version_key -> row of MIGRATION_SCHEMA_VERSIONS (a pull query)."""
    rows = list(client.query(f"SELECT * FROM {VERSIONS};"))  # noqa: S608 - a constant name
    return _pull_rows(rows)


def _pull_rows(chunks: list[str]) -> dict[str, dict[str, Any]]:
    text = "".join(chunks).strip()
    if not text:
        return {}
    data = json.loads(text)
    header = data[0]["header"]
    names = [c.split("`")[1] if "`" in c else c.split()[0] for c in _split_schema(header["schema"])]
    out: dict[str, dict[str, Any]] = {}
    for item in data[1:]:
        if "row" not in item:
            continue
        row = {n.upper(): v for n, v in zip(names, item["row"]["columns"], strict=False)}
        out[str(row.get("VERSION_KEY"))] = row
    return out


def _split_schema(schema: str) -> list[str]:
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


def _sql_str(v: str | None) -> str:
    return "NULL" if v is None else "'" + v.replace("'", "''") + "'"


def _event(
    client: Any,
    version: str,
    name: str,
    state: str,
    chk: str,
    started: str | None,
    completed: str | None,
    previous: str,
    error: str | None = None,
) -> None:
    for key in ("CURRENT", version):  # the version row last: once it shows, CURRENT does too
        _ksql(
            client,
            f"INSERT INTO {EVENTS} (version_key, version, name, state, checksum, "  # noqa: S608
            f"started_on, completed_on, previous, error_reason) VALUES ("
            f"{_sql_str(key)}, {_sql_str(version)}, {_sql_str(name)}, {_sql_str(state)}, "
            f"{_sql_str(chk)}, {_sql_str(started)}, {_sql_str(completed or '')}, "
            f"{_sql_str(previous)}, {_sql_str(error or 'N/A')});",
        )


def _now() -> str:
    return str(int(datetime.now(tz=UTC).timestamp() * 1000))


def _statements_of(path: Path) -> list[str]:
    from stream_apps.ksqldb.syntax import split_statements  # noqa: PLC0415

    return split_statements(path.read_text())


def _apply_file(client: Any, path: Path) -> list[dict[str, Any]]:
    """Run a file's statements in order; SET/UNSET apply client-side to the rest of the file,
    as the ksql-migrations tool applies them. Returns the server's entities."""
    props: dict[str, Any] = {}
    entities: list[dict[str, Any]] = []
    for stmt in _statements_of(path):
        m = re.match(r"^\s*(UN)?SET\s+'([^']+)'\s*(?:=\s*'([^']*)')?\s*;", stmt, re.I)
        if m:
            if m.group(1):
                props.pop(m.group(2), None)
            else:
                props[m.group(2)] = m.group(3)
            continue
        entities.extend(_ksql(client, stmt, props))
    return entities


def _wait_versions(client: Any, version: str, state: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = applied_versions(client).get(version)
        if row is not None and row.get("STATE") == state:
            return
        time.sleep(0.2)


def migrate(
    client: Any, directory: Path, *, until: str | None = None, report: Any = None
) -> list[str]:
    """Apply pending migrations in order; returns the versions applied."""
    ensure_metadata(client)
    history = applied_versions(client)
    current = history.get("CURRENT")
    previous = (
        current["VERSION"] if current and current.get("STATE") == "MIGRATED" else NONE_VERSION
    )
    done: list[str] = []
    for version, name, path in migration_files(directory):
        chk = checksum(path)
        row = history.get(version)
        if row is not None and row.get("STATE") == "MIGRATED":
            if row.get("CHECKSUM") != chk:
                msg = (
                    f"migration V{int(version):06d} was changed after it was applied "
                    f"(checksum {row.get('CHECKSUM')} != {chk}); write a new migration instead"
                )
                raise KsqlCommandError(msg)
            previous = version
            continue
        started = _now()
        _event(client, version, name, "RUNNING", chk, started, None, previous)
        try:
            _apply_file(client, path)
        except KsqlCommandError as exc:
            _event(client, version, name, "ERROR", chk, started, _now(), previous, str(exc)[:1000])
            msg = f"migration V{int(version):06d} ({name}) failed: {exc}"
            raise KsqlCommandError(msg) from None
        _event(client, version, name, "MIGRATED", chk, started, _now(), previous)
        _wait_versions(client, version, "MIGRATED")
        if report is not None:
            report(version, name)
        done.append(version)
        previous = version
        if until is not None and version == str(int(until)):
            break
    return done


# -- the NEARBY_CUSTOMERS writer ------------------------------------------------------------------


def nearby_writers(client: Any) -> list[dict[str, Any]]:
    """The persistent queries that write NEARBY_CUSTOMERS (SHOW QUERIES, by sink)."""
    queries = _ksql(client, "SHOW QUERIES;")[0].get("queries", [])
    return [q for q in queries if NEARBY_STREAM in (q.get("sinks") or [])]


def sync_nearby_writer(
    client: Any, engine: str, writer_file: Path = NEARBY_WRITER_FILE
) -> str:
    """Make ksqlDB's NEARBY_CUSTOMERS writer follow NEARBY_ENGINE: start the query of
    ``writer_file`` when ``engine`` is ``ksqldb`` and no query writes the stream, terminate
    every query writing it when ``engine`` is ``faust``. Returns one sentence saying what it
    did."""
    streams = {s["name"] for s in _ksql(client, "SHOW STREAMS;")[0]["streams"]}
    if NEARBY_STREAM not in streams:
        return (f"{NEARBY_STREAM} is not declared yet (a migration is pending): its writer "
                "query was neither started nor terminated")
    writers = nearby_writers(client)
    if engine == "ksqldb":
        if writers:
            running = ", ".join(f"{q['id']} ({q.get('state', 'unknown')})" for q in writers)
            return f"NEARBY_ENGINE=ksqldb: {NEARBY_STREAM} is written by {running}"
        entities = _apply_file(client, writer_file)
        started = [qid for e in entities if (qid := e.get("commandStatus", {}).get("queryId"))]
        if not started:  # a server that does not name the query in its answer
            started = [q["id"] for q in nearby_writers(client)]
        return (f"NEARBY_ENGINE=ksqldb: started {', '.join(started)} writing {NEARBY_STREAM} "
                f"from the end of customers_locations ({writer_file.name})")
    if not writers:
        return (f"NEARBY_ENGINE=faust: no ksqlDB query writes {NEARBY_STREAM} (the Faust "
                "worker's proximity agent does)")
    for q in writers:
        _ksql(client, f"TERMINATE {q['id']};")
    return (f"NEARBY_ENGINE=faust: terminated {', '.join(q['id'] for q in writers)}, which wrote "
            f"{NEARBY_STREAM} (the Faust worker's proximity agent writes it)")


# -- commands -----------------------------------------------------------------------------------


def _dir_option(seed_demo: bool, directory: Path | None) -> Path:
    if directory is not None:
        return directory
    return SEED_DEMO_DIR if seed_demo else MIGRATIONS_DIR


@app.command("migrate")
def migrate_cmd(
    seed_demo: Annotated[
        bool, typer.Option("--seed-demo", help="Apply ksql/seed_demo/ instead.")
    ] = False,
    directory: Annotated[Path | None, typer.Option(help="A migrations directory.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this version.")] = None,
) -> None:
    """Apply pending migrations in order (records MIGRATION_EVENTS like ksql-migrations); then,
    for ksql/migrations/, start ksqlDB's NEARBY_CUSTOMERS writer (ksql/nearby_writer/) when
    NEARBY_ENGINE=ksqldb, or terminate it when NEARBY_ENGINE=faust (the worker writes it)."""
    settings = get_settings()
    client = make_client(settings)
    ours = not seed_demo and directory is None
    try:
        done = migrate(
            client,
            _dir_option(seed_demo, directory),
            until=until,
            report=lambda v, n: console.print(f"[green]migrated[/] V{int(v):06d} {n}"),
        )
        console.print(f"{len(done)} migration(s) applied" if done else "already up to date")
        if ours:
            console.print(sync_nearby_writer(client, settings.nearby_engine), markup=False)
    except KsqlCommandError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _unreachable(exc) from None


@app.command("status")
def status_cmd(
    seed_demo: Annotated[
        bool, typer.Option("--seed-demo", help="Compare with ksql/seed_demo/.")
    ] = False,
    directory: Annotated[Path | None, typer.Option(help="A migrations directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """Which migrations are applied, pending, or changed since they were applied."""
    client = make_client()
    try:
        ensure_metadata(client)
        history = applied_versions(client)
    except (KsqlCommandError, OSError) as exc:
        raise _fail(str(exc)) from None
    rows = []
    for version, name, path in migration_files(_dir_option(seed_demo, directory)):
        h = history.get(version)
        state = h.get("STATE") if h else "PENDING"
        if h and h.get("CHECKSUM") != checksum(path) and state == "MIGRATED":
            state = "MIGRATED (file changed)"
        rows.append(
            {
                "version": version,
                "name": name,
                "state": state,
                "started_on": h.get("STARTED_ON") if h else None,
                "completed_on": h.get("COMPLETED_ON") if h else None,
            }
        )
    current = history.get("CURRENT", {}).get("VERSION")
    if as_json:
        sys.stdout.write(json.dumps({"current": current, "migrations": rows}) + "\n")
        return
    table = Table("version", "name", "state", "completed")
    for r in rows:
        done = r["completed_on"]
        when = datetime.fromtimestamp(int(done) / 1000, tz=UTC).isoformat() if done else ""
        table.add_row(r["version"], r["name"], r["state"], when)
    out.print(table)
    out.print(f"current version: {current or NONE_VERSION}")


def _render(columns: list[str], rows: list[list[Any]], title: str | None = None) -> Table:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(
            *(
                "null" if v is None else json.dumps(v) if isinstance(v, dict | list) else str(v)
                for v in row
            )
        )
    return table


@app.command("query")
def query_cmd(
    sql: Annotated[
        str | None,
        typer.Argument(
            help="A statement: SELECT (pull, or push with EMIT CHANGES), SHOW, DESCRIBE, CREATE..."
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Run each statement of this .sql file in order.",
                     exists=True, dir_okay=False, readable=True),
    ] = None,
    earliest: Annotated[
        bool, typer.Option(help="Push queries start from the earliest offset.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Stop a push query after N rows.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Rows as JSON lines (an object per "
                                          "row); the last line: one JSON object, {\"query\": "
                                          "{columns, rows, push}} or {\"entities\": [...]}.")] = False,
) -> None:
    """Run a statement (or each of a file's, `-f`); push queries stream rows until Ctrl-C (or
    LIMIT). A file's SET/UNSET apply to its later statements; the first error stops it."""
    if (sql is None) == (file is None):
        msg = "give a statement or --file FILE (one of them)"
        raise _fail(msg)
    client = make_client()
    props: dict[str, Any] = {"auto.offset.reset": "earliest"} if earliest else {}
    # Ctrl-C ends a push query, even when started where SIGINT was ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if file is not None:
        statements = _statements_of(file)
        if not statements:
            msg = f"{file} holds no statement"
            raise _fail(msg)
        _server_info(client)  # before the first statement: down is one sentence
    else:
        text = (sql or "").strip()
        statements = [text if text.endswith(";") else text + ";"]
    try:
        for stmt in statements:
            if set_property(stmt, props):
                continue
            if file is not None and not as_json:
                console.print(f"[dim]> {escape(_first_line(stmt))}[/]", highlight=False)
            try:
                run_statement(client, stmt, props, limit=limit, as_json=as_json)
            except KeyboardInterrupt:  # Ctrl-C while a statement or pull query runs
                console.print("[cyan]cancelled[/]")
                raise typer.Exit(130) from None
    except KsqlCommandError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _unreachable(exc) from None


_SET_RE = re.compile(r"^\s*(UN)?SET\s+'([^']+)'\s*(?:=\s*'([^']*)')?\s*;?\s*$", re.I)


def set_property(stmt: str, props: dict[str, Any]) -> bool:
    """Apply ``SET 'name'='value';`` / ``UNSET 'name';`` to ``props`` as ksqlDB's CLI does
    (client-side, for the statements after it); False when ``stmt`` is neither."""
    m = _SET_RE.match(stmt)
    if m is None:
        return False
    if m.group(1):
        props.pop(m.group(2), None)
    else:
        props[m.group(2)] = m.group(3) or ""
    return True


def _first_line(stmt: str) -> str:
    lines = [line for line in stmt.strip().splitlines()
             if line.strip() and not line.lstrip().startswith("--")]
    return lines[0] + (" ..." if len(lines) > 1 else "") if lines else ""


def classify(text: str) -> tuple[bool, bool]:
    """(is a query, is a push query) of one statement."""
    from stream_apps.ksqldb.syntax import Query, parse  # noqa: PLC0415

    try:
        stmts = parse(text)
        first = stmts[0] if len(stmts) == 1 else None
        is_select = isinstance(first, Query)
        push = isinstance(first, Query) and first.select is not None and first.select.emit_changes
    except Exception:  # noqa: BLE001 - what the local parser cannot read (its errors or its gaps): the
        # server judges the statement; only its kind is guessed here
        bare = re.sub(r"--[^\n]*|/\*.*?\*/", " ", text, flags=re.S).strip()
        is_select = bare.upper().startswith("SELECT")
        push = bool(re.search(r"\bEMIT\s+CHANGES\b", bare, re.I))
    return is_select, push


def run_statement(client: Any, text: str, props: dict[str, Any], *, limit: int | None = None,
                  as_json: bool = False) -> None:
    """Run one statement and print its result: a table with the result's columns (a push
    query's rows as they arrive, under a header line). Raises :class:`KsqlCommandError` with
    ksqlDB's message, :class:`KsqlUnavailable` when no endpoint answers."""
    is_select, push = classify(text)
    if not is_select:
        _print_entities(_ksql(client, text, props), as_json)
        return
    _run_select(client, text, props, push, limit, as_json)


class _LimitReached(Exception):
    """--limit rows were printed."""


def _run_select(
    client: Any, text: str, props: dict[str, Any], push: bool, limit: int | None, as_json: bool
) -> None:
    from ksql.errors import KSQLError  # noqa: PLC0415

    names: list[str] = []
    rows: list[list[Any]] = []
    buf = ""
    count = 0
    try:
        for chunk in client.query(text, stream_properties=props):
            buf += chunk
            while "\n" in buf:
                line, buf = buf.split("\n", 1)
                item = _parse_line(line)
                if item is None:
                    continue
                if "header" in item:
                    names = [c.split("`")[1] for c in _split_schema(item["header"]["schema"])]
                    if push and not as_json:
                        out.print(" | ".join(names), style="bold", markup=False, highlight=False)
                    continue
                if "row" in item:
                    values = item["row"]["columns"]
                    count += 1
                    if as_json:
                        sys.stdout.write(json.dumps(dict(zip(names, values, strict=False))) + "\n")
                        sys.stdout.flush()
                    elif push:
                        out.print(" | ".join(_cell(v) for v in values), markup=False,
                                  highlight=False)
                    else:
                        rows.append(values)
                    if limit is not None and count >= limit:
                        raise _LimitReached
                elif "errorMessage" in item or "@type" in item:
                    err = item.get("errorMessage", item)
                    raise KsqlCommandError(str(err.get("message")))
        tail = _parse_line(buf)
        if tail is not None and "@type" in tail:
            raise KsqlCommandError(str(tail.get("message")))
    except _LimitReached:
        pass
    except KeyboardInterrupt:  # Ctrl-C ends a push query; it cancels any other statement
        if not push:
            raise
    except (KSQLError, ValueError) as exc:
        msg = getattr(exc, "msg", None) or str(exc)
        m = re.search(r"HTTP error encountered: \d+: (.*)$", msg, re.S)
        if m:
            try:
                msg = json.loads(m.group(1)).get("message", msg)
            except json.JSONDecodeError:
                pass
        raise KsqlCommandError(msg) from None
    if as_json:  # the last line, as every --json: one JSON object (the rows came before it)
        sys.stdout.write(json.dumps({"query": {"columns": names, "rows": count,
                                               "push": push}}) + "\n")
    if push:  # by Ctrl-C, --limit or its LIMIT
        console.print(f"[cyan]query ended[/] after {count} row(s)")
    elif not as_json:
        if names and (names[0] or rows):
            out.print(_render(names, rows))
        console.print(f"{len(rows)} row(s)")


def _cell(v: Any) -> str:
    return "null" if v is None else json.dumps(v) if isinstance(v, dict | list) else str(v)


def _parse_line(line: str) -> dict[str, Any] | None:
    s = line.strip().lstrip("[").lstrip(",").rstrip(",").rstrip("]").strip()
    if not s:
        return None
    try:
        v = json.loads(s)
    except json.JSONDecodeError:
        return None
    return v if isinstance(v, dict) else None


def _print_entities(entities: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"entities": entities}) + "\n")
        return
    for e in entities:
        kind = e.get("@type")
        if kind in ("streams", "tables"):
            items = e[kind]
            out.print(
                _render(
                    ["name", "topic", "key format", "value format", "windowed"],
                    [
                        [i["name"], i["topic"], i["keyFormat"], i["valueFormat"], i["isWindowed"]]
                        for i in items
                    ],
                    kind,
                )
            )
        elif kind == "queries":
            out.print(
                _render(
                    ["id", "state", "sinks"],
                    [[q["id"], q["state"], ",".join(q["sinks"])] for q in e["queries"]],
                    "queries",
                )
            )
        elif kind == "kafka_topics":
            out.print(
                _render(
                    ["topic", "partitions"],
                    [[t["name"], len(t["replicaInfo"])] for t in e["topics"]],
                    "topics",
                )
            )
        elif kind == "sourceDescription":
            d = e["sourceDescription"]
            out.print(
                _render(
                    ["field", "type"],
                    [
                        [
                            f["name"] + (" (key)" if f.get("type") == "KEY" else ""),
                            f["schema"]["type"],
                        ]
                        for f in d["fields"]
                    ],
                    f"{d['type']} {d['name']} (topic {d['topic']})",
                )
            )
        elif kind == "currentStatus":
            out.print(e["commandStatus"]["message"])
        else:
            out.print_json(json.dumps(e))


SHELL_HELP = """Statements end with ';' and may span lines. A SELECT with EMIT CHANGES streams rows
until LIMIT or Ctrl-C; Ctrl-C at the prompt drops the statement being typed.
SET 'auto.offset.reset'='earliest'; applies to the statements after it (UNSET to drop it).
exit, quit or Ctrl-D leaves."""


def complete_statements(buffer: str) -> tuple[list[str], str]:
    """The complete statements of what was typed (each ending with its top-level ';') and the
    rest still being typed ("" when it holds only blanks and comments)."""
    from stream_apps.ksqldb.syntax import split_statements, tokenize  # noqa: PLC0415

    try:
        tokens = tokenize(buffer)
    except Exception:  # noqa: BLE001 - an unterminated quote, or a character ksqlDB will refuse
        closed = re.sub(r"'(?:[^']|'')*'|`(?:[^`]|``)*`|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/",
                        "", buffer, flags=re.S)
        if re.search(r"['`\"]|/\*", closed) or not buffer.rstrip().endswith(";"):
            return [], buffer  # a quote or comment still open: the statement goes on
        return [buffer.strip()], ""  # typed to its end: the server judges it
    ends = [t.pos for t in tokens if t.is_op(";")]
    if not ends:
        rest_tokens = [t for t in tokens if t.kind != "EOF"]
        return [], buffer if rest_tokens else ""
    done, rest = buffer[: ends[-1] + 1], buffer[ends[-1] + 1 :]
    if not [t for t in tokenize(rest) if t.kind != "EOF"]:
        rest = ""
    return split_statements(done), rest


def _server_info(client: Any) -> dict[str, Any]:
    """ksqlDB's ``/info``; an endpoint that does not answer exits with one sentence."""
    import httpx  # noqa: PLC0415

    try:
        info = client.sa.get_request(client.url + "/info").json()
    except (httpx.HTTPError, OSError, ValueError) as exc:
        raise _unreachable(exc) from None
    return info if isinstance(info, dict) else {}


def _history(settings: Settings) -> Path | None:
    """Readline with a history file in the data dir (an interactive terminal only)."""
    try:
        import readline  # noqa: PLC0415
    except ImportError:  # a Python without readline: the shell works without history
        return None
    from instore.embedded import resolve_data_dir  # noqa: PLC0415

    path = resolve_data_dir(settings, None) / "ksql_history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError as exc:
        console.print(f"[yellow]no history[/] ({exc})")
        return None
    readline.set_history_length(1000)
    return path


@app.command("shell")
def shell_cmd(
    earliest: Annotated[
        bool, typer.Option(help="Push queries start from the earliest offset.")
    ] = False,
) -> None:
    """An interactive ksqlDB shell: statements end with ';' (multi-line), results as tables,
    push queries print rows as they arrive until Ctrl-C; history; exit or Ctrl-D leaves."""
    settings = get_settings()
    client = make_client(settings)
    version = _server_info(client).get("KsqlServerInfo", {}).get("version", "?")
    interactive = sys.stdin.isatty()
    history = _history(settings) if interactive else None
    if interactive:
        console.print(f"ksqlDB {version} at {settings.ksqldb_address}", highlight=False)
        console.print(SHELL_HELP, markup=False, highlight=False)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    props: dict[str, Any] = {"auto.offset.reset": "earliest"} if earliest else {}
    buffer = ""
    try:
        while True:
            prompt = ("ksql> " if not buffer else "   -> ") if interactive else ""
            try:
                line = input(prompt)
            except EOFError:
                break
            except KeyboardInterrupt:  # drop what was being typed
                buffer = ""
                console.print()
                continue
            if not buffer and line.strip().rstrip(";").strip().lower() in ("exit", "quit"):
                break
            if not buffer and line.strip().lower() in ("help", "help;"):
                console.print(SHELL_HELP, markup=False, highlight=False)
                continue
            statements, buffer = complete_statements(buffer + line + "\n")
            for stmt in statements:
                _shell_run(client, stmt, props)
        if buffer.strip():  # input ended inside a statement
            console.print("[yellow]not run[/] (no closing ';'): " + _first_line(buffer),
                          highlight=False)
    finally:
        if history is not None:
            import readline  # noqa: PLC0415

            try:
                readline.write_history_file(history)
            except OSError as exc:
                console.print(f"[yellow]history not saved[/] ({exc})")


def _shell_run(client: Any, stmt: str, props: dict[str, Any]) -> None:
    """One statement of the shell: errors are printed and the shell goes on."""
    if set_property(stmt, props):
        console.print(f"properties: {json.dumps(props)}", markup=False, highlight=False)
        return
    try:
        run_statement(client, stmt, props)
    except KsqlCommandError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    except OSError as exc:  # the endpoint went away: say so, keep the shell
        msg = str(exc) if isinstance(exc, KsqlUnavailable) else f"ksqlDB: {exc}"
        console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)
    except KeyboardInterrupt:
        console.print("[cyan]cancelled[/]")


@app.command("info")
def info_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
) -> None:
    """The ksqlDB server's version, cluster and health."""
    import httpx  # noqa: PLC0415

    settings = get_settings()
    client = make_client(settings)
    try:
        info = client.sa.get_request(client.url + "/info").json()
        health = client.sa.get_request(client.url + "/healthcheck").json()
    except (httpx.HTTPError, OSError) as exc:
        raise _unreachable(exc) from None
    body = {"url": settings.ksqldb_address, **info, "health": health}
    if as_json:
        sys.stdout.write(json.dumps(body) + "\n")
        return
    s = info.get("KsqlServerInfo", {})
    table = Table("key", "value")
    table.add_row("url", settings.ksqldb_address)
    table.add_row("version", str(s.get("version")))
    table.add_row("service id", str(s.get("ksqlServiceId")))
    table.add_row("kafka cluster", str(s.get("kafkaClusterId")))
    table.add_row("status", str(s.get("serverStatus")))
    table.add_row("healthy", str(health.get("isHealthy")))
    out.print(table)


@app.command("serve")
def serve_cmd(
    port: Annotated[int | None, typer.Option(help="Port (default: settings.ksql_port).")] = None,
) -> None:
    """Run the local ksqlDB-compatible endpoint on the embedded broker (started by `instore up`)."""
    from instore.logs import setup_logging  # noqa: PLC0415

    setup_logging()
    try:
        from stream_apps.ksqldb.server import serve  # noqa: PLC0415
    except ImportError as exc:
        msg = f"the local ksqlDB endpoint is not installed ({exc}); run `make setup`"
        raise _fail(msg) from None
    serve(get_settings(), port=port)


def bench(
    products: Annotated[int, typer.Option(help="Products per store.")] = 10_000,
    promoted: Annotated[int, typer.Option(help="Promoted products per store.")] = 200,
    stores: Annotated[int, typer.Option(help="Stores.")] = 10,
    events: Annotated[int, typer.Option(help="Positions to process.")] = 20_000,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
    profile: Annotated[
        Path | None,
        typer.Option(help="Write a cProfile of the NEARBY query's thread (pstats) to this file."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="Processes for NEARBY_CUSTOMERS (ksql.streams.num.stream.threads)."),
    ] = None,
) -> None:
    """NEARBY_CUSTOMERS from ksql/migrations/ on the local endpoint: positions/s, rows/s."""
    from bench.ksql import run_bench  # noqa: PLC0415

    result = run_bench(
        products=products,
        promoted=promoted,
        stores=stores,
        events=events,
        progress=None if as_json else console.print,
        profile=profile,
        threads=threads,
    )
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table("figure", "value")
    for k, v in result.items():
        table.add_row(k, f"{v:,.2f}" if isinstance(v, float) else str(v))
    out.print(table)
