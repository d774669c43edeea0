"""`instore ksql migrate`'s work: migrations as Confluent's ksql-migrations tool applies them,
then ksqlDB's NEARBY_CUSTOMERS writer made to follow ``NEARBY_ENGINE``.

Migrations: files ``V<6 digits>__<name>.sql``, history in the ``MIGRATION_EVENTS`` stream and
the ``MIGRATION_SCHEMA_VERSIONS`` table (one row per version plus ``CURRENT``), states
PENDING/RUNNING/MIGRATED/ERROR, checksum = MD5 of the file, so either tool can continue what
the other started.

After the migrations, the query of ``ksql/nearby_writer/nearby_customers.sql`` runs when
``NEARBY_ENGINE`` is ``ksqldb``, and no query writes NEARBY_CUSTOMERS when it is ``faust`` (the
Faust worker does).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from instore.commands.ksql.client import KsqlCommandError, run_ksql, split_schema
from instore.commands.ksql.statements import statements_of

ROOT = Path(__file__).resolve().parents[3]
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
    listed = run_ksql(client, "SHOW STREAMS;")[0]["streams"]
    if not any(s["name"] == EVENTS for s in listed):
        run_ksql(
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
    tables = run_ksql(client, "SHOW TABLES;")[0]["tables"]
    if not any(s["name"] == VERSIONS for s in tables):
        run_ksql(
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
    names = [c.split("`")[1] if "`" in c else c.split()[0] for c in split_schema(header["schema"])]
    out: dict[str, dict[str, Any]] = {}
    for item in data[1:]:
        if "row" not in item:
            continue
        row = {n.upper(): v for n, v in zip(names, item["row"]["columns"], strict=False)}
        out[str(row.get("VERSION_KEY"))] = row
    return out


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
        run_ksql(
            client,
            f"INSERT INTO {EVENTS} (version_key, version, name, state, checksum, "  # noqa: S608
            f"started_on, completed_on, previous, error_reason) VALUES ("
            f"{_sql_str(key)}, {_sql_str(version)}, {_sql_str(name)}, {_sql_str(state)}, "
            f"{_sql_str(chk)}, {_sql_str(started)}, {_sql_str(completed or '')}, "
            f"{_sql_str(previous)}, {_sql_str(error or 'N/A')});",
        )


def _now() -> str:
    return str(int(datetime.now(tz=UTC).timestamp() * 1000))


def _apply_file(client: Any, path: Path) -> list[dict[str, Any]]:
    """Run a file's statements in order; SET/UNSET apply client-side to the rest of the file,
    as the ksql-migrations tool applies them. Returns the server's entities."""
    props: dict[str, Any] = {}
    entities: list[dict[str, Any]] = []
    for stmt in statements_of(path):
        m = re.match(r"^\s*(UN)?SET\s+'([^']+)'\s*(?:=\s*'([^']*)')?\s*;", stmt, re.I)
        if m:
            if m.group(1):
                props.pop(m.group(2), None)
            else:
                props[m.group(2)] = m.group(3)
            continue
        entities.extend(run_ksql(client, stmt, props))
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
    queries = run_ksql(client, "SHOW QUERIES;")[0].get("queries", [])
    return [q for q in queries if NEARBY_STREAM in (q.get("sinks") or [])]


def sync_nearby_writer(
    client: Any, engine: str, writer_file: Path = NEARBY_WRITER_FILE
) -> str:
    """Make ksqlDB's NEARBY_CUSTOMERS writer follow NEARBY_ENGINE: start the query of
    ``writer_file`` when ``engine`` is ``ksqldb`` and no query writes the stream, terminate
    every query writing it when ``engine`` is ``faust``. Returns one sentence saying what it
    did."""
    streams = {s["name"] for s in run_ksql(client, "SHOW STREAMS;")[0]["streams"]}
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
        run_ksql(client, f"TERMINATE {q['id']};")
    return (f"NEARBY_ENGINE=faust: terminated {', '.join(q['id'] for q in writers)}, which wrote "
            f"{NEARBY_STREAM} (the Faust worker's proximity agent writes it)")
