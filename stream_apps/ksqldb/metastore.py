"""Streams and tables known to the endpoint, and how their records are read and written.

Formats: KEY_FORMAT 'KAFKA' (a single STRING key is its UTF-8 bytes, INTEGER/BIGINT/DOUBLE are
big-endian binary, as Kafka's serializers write them), 'JSON' (one column: the bare JSON value,
several: an object), 'NONE'; VALUE_FORMAT 'JSON'. Windowed keys carry the window start as 8
more big-endian bytes. JSON field names match columns case-insensitively, like ksqlDB.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

from instore.errors import InstoreError
from stream_apps.ksqldb.casts import caster
from stream_apps.ksqldb.errors import StatementError
from stream_apps.ksqldb.sqltypes import SqlType
from stream_apps.ksqldb.statements import WindowSpec


class DeserializationError(InstoreError, ValueError):
    pass


def check_column_names(names: list[str]) -> None:
    """A CREATE may not declare a system column (ROWTIME, ROWPARTITION, ...)."""
    for name in names:
        if name.upper() in ("ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND"):
            msg = (
                f"'{name}' is a reserved column name. You cannot use it as a name for a column."
            )
            raise StatementError(msg)


def formats(
    props: dict[str, Any], default_key: str = "KAFKA", default_value: str | None = None
) -> tuple[str, str]:
    """(key format, value format) of a WITH clause: FORMAT sets both, KEY_FORMAT and
    VALUE_FORMAT each; values are JSON on the local endpoint."""
    fmt = props.get("FORMAT")
    key_format = str(props.get("KEY_FORMAT") or fmt or default_key).upper()
    value_format = props.get("VALUE_FORMAT") or fmt or default_value
    if value_format is None:
        msg = (
            "Statement is missing the 'VALUE_FORMAT' property from the WITH clause. "
            "Either provide one or set a default via the "
            "'ksql.persistence.default.format.value' config."
        )
        raise StatementError(msg)
    value_format = str(value_format).upper()
    if value_format not in ("JSON",):
        msg = f"Unsupported VALUE_FORMAT '{value_format}': the local endpoint uses JSON."
        raise StatementError(msg)
    return key_format, value_format


def sink_key_format(
    props: dict[str, Any], driver_key_format: str, key_columns: list[tuple[str, SqlType]]
) -> str:
    """The key format of a CSAS/CTAS sink: the WITH clause's, else the driving source's
    (NONE becomes KAFKA once the result has a key; several key columns need JSON)."""
    explicit = props.get("KEY_FORMAT") or props.get("FORMAT")
    if explicit:
        return str(explicit).upper()
    key_format = driver_key_format.upper()
    if key_format == "NONE" and key_columns:
        key_format = "KAFKA"
    if key_format == "KAFKA" and len(key_columns) > 1:
        key_format = "JSON"
    return key_format


def source_window(props: dict[str, Any]) -> WindowSpec | None:
    """WINDOW_TYPE / WINDOW_SIZE of a CREATE over a windowed topic (keys carry the window)."""
    kind = props.get("WINDOW_TYPE")
    if kind is None:
        if props.get("WINDOW_SIZE") is not None:
            msg = "'WINDOW_SIZE' should not be set when 'WINDOW_TYPE' is not set."
            raise StatementError(msg)
        return None
    kind = str(kind).strip().upper()
    if kind not in ("TUMBLING", "HOPPING", "SESSION"):
        msg = (
            f"Invalid value {kind} for property WINDOW_TYPE: String must be one of: SESSION, "
            "HOPPING, TUMBLING"
        )
        raise StatementError(msg)
    size = props.get("WINDOW_SIZE")
    if kind == "SESSION":
        if size is not None:
            msg = "'WINDOW_SIZE' should not be used with 'WINDOW_TYPE=SESSION'."
            raise StatementError(msg)
        return WindowSpec("SESSION", 0)
    if size is None:
        msg = (
            f"{kind} windows require 'WINDOW_SIZE' to be provided in the WITH clause. "
            "For example: 'WINDOW_SIZE'='10 SECONDS'"
        )
        raise StatementError(msg)
    parts = str(size).split()
    units = {"MILLISECOND": 1, "SECOND": 1000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
    try:
        n = int(parts[0])
        unit = parts[1].upper().rstrip("S")
        return WindowSpec(kind, n * units[unit])
    except (IndexError, ValueError, KeyError):
        msg = f"Invalid WINDOW_SIZE property : {size}"
        raise StatementError(msg) from None


def wrap_single_value(props: dict[str, Any], values: list[Any]) -> bool:
    """WRAP_SINGLE_VALUE of a WITH clause (default true), refused where ksqlDB refuses it."""
    raw = props.get("WRAP_SINGLE_VALUE")
    if raw is None:
        return True
    wrap = str(raw).strip().lower() not in ("false", "0")
    if not wrap and len(values) != 1:
        msg = "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas"
        raise StatementError(msg)
    return wrap


@dataclass
class Source:
    name: str
    kind: str  # STREAM | TABLE
    topic: str
    key_columns: list[tuple[str, SqlType]]
    value_columns: list[tuple[str, SqlType]]
    key_format: str = "KAFKA"
    value_format: str = "JSON"
    partitions: int = 1
    replicas: int = 1
    timestamp: str | None = None
    window: WindowSpec | None = None
    statement: str = ""
    read_only: bool = False
    typed: bool = True  # declared with a schema (coerce on read) or derived (read as written)
    owner_query: str | None = None  # the persistent query that writes it (CSAS/CTAS)
    wrap_single: bool = True  # WRAP_SINGLE_VALUE=false: a single value column written bare
    _value_lookup: dict[str, str] = field(default_factory=dict, repr=False)
    _upper_lookup: dict[str, str] = field(default_factory=dict, repr=False)
    _value_names: list[str] | None = field(default=None, repr=False)
    _casters: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.reindex()

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (for worker processes): the lookups and casters are rebuilt on load."""
        state = dict(self.__dict__)
        for k in ("_value_lookup", "_upper_lookup", "_casters", "_value_names"):
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._value_names = None
        self.reindex()

    def reindex(self) -> None:
        self._value_lookup = {name: name for name, _ in self.value_columns}
        self._upper_lookup = {}
        for name, _ in self.value_columns:
            self._upper_lookup.setdefault(name.upper(), name)
        self._casters = {name: _coercer(t) for name, t in self.value_columns}

    @property
    def columns(self) -> dict[str, SqlType]:
        return dict(self.key_columns) | dict(self.value_columns)

    @property
    def windowed(self) -> bool:
        return self.window is not None

    def schema_string(self) -> str:
        parts = [
            f"`{n}` {t} {'PRIMARY KEY' if self.kind == 'TABLE' else 'KEY'}"
            for n, t in self.key_columns
        ]
        parts += [f"`{n}` {t}" for n, t in self.value_columns]
        return ", ".join(parts)

    # -- values -------------------------------------------------------------------------------
    def decode_value(self, raw: bytes) -> dict[str, Any]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            msg = f"Failed to deserialize value from topic: {self.topic}. Invalid JSON: {exc}"
            raise DeserializationError(msg) from None
        if not self.wrap_single and len(self.value_columns) == 1:
            obj = {self.value_columns[0][0]: obj}
        elif not isinstance(obj, dict):
            if len(self.value_columns) == 1:
                obj = {self.value_columns[0][0]: obj}
            else:
                msg = (
                    f"Failed to deserialize value from topic: {self.topic}. Can't convert "
                    f"type. sourceType: {type(obj).__name__}, requiredType: STRUCT"
                )
                raise DeserializationError(msg)
        out: dict[str, Any] = {}
        lookup = self._value_lookup
        upper = self._upper_lookup
        if not self.typed:
            for k, v in obj.items():
                col = lookup.get(k)
                if col is None:
                    col = upper.get(k.upper())
                    if col is None or col in obj:
                        continue
                out[col] = v
            return out
        casters = self._casters
        for k, v in obj.items():
            col = lookup.get(k)
            if col is None:  # case-insensitive match; an exact match elsewhere wins
                col = upper.get(k.upper())
                if col is None or col in out or col in obj:
                    continue
            if v is None:
                out[col] = None
                continue
            try:
                out[col] = casters[col](v)
            except (ValueError, TypeError, OverflowError):
                msg = (
                    f"Failed to deserialize value from topic: {self.topic}. Can't convert "
                    f"field '{col}' of type {type(v).__name__} to {self.columns[col]}"
                )
                raise DeserializationError(msg) from None
        return out

    def encode_value(self, row: dict[str, Any]) -> bytes:
        names = self._value_names
        if names is None or len(names) != len(self.value_columns):
            names = self._value_names = [n for n, _ in self.value_columns]
        if not self.wrap_single and len(names) == 1:
            return orjson.dumps(row.get(names[0]))
        return orjson.dumps({n: row.get(n) for n in names})

    # -- keys ---------------------------------------------------------------------------------
    def decode_key(self, raw: bytes | None) -> tuple[tuple[Any, ...], Any]:
        """(key column values, window start or None)."""
        if raw is None or not self.key_columns:
            return tuple(None for _ in self.key_columns), None
        wstart: Any = None
        if self.window is not None and self.window.kind == "SESSION" and len(raw) >= 16:
            # Kafka Streams' session key: key bytes, window end, window start (big-endian)
            end, start = struct.unpack(">qq", raw[-16:])
            wstart = (start, end)
            raw = raw[:-16]
        elif self.window is not None and len(raw) >= 8:
            wstart = struct.unpack(">q", raw[-8:])[0]
            raw = raw[:-8]
        if self.key_format == "JSON":
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                msg = f"Failed to deserialize key from topic: {self.topic}: {exc}"
                raise DeserializationError(msg) from None
            if len(self.key_columns) == 1 and (
                not isinstance(obj, dict) or self.key_columns[0][1].name in ("STRUCT", "MAP")
            ):
                return (obj,), wstart  # a single key column is unwrapped, a struct one too
            if isinstance(obj, dict):
                return tuple(obj.get(n, obj.get(n.upper())) for n, _ in self.key_columns), wstart
            msg = f"Failed to deserialize key from topic: {self.topic}"
            raise DeserializationError(msg)
        ((name, ty),) = self.key_columns[:1]
        return (_kafka_decode(raw, ty, self.topic),), wstart

    def encode_key(self, values: tuple[Any, ...], wstart: Any = None) -> bytes | None:
        """``wstart``: the window start, or (start, end) of a session window."""
        if not self.key_columns or all(v is None for v in values):
            return None if wstart is None else _window_suffix(wstart)
        if self.key_format == "JSON":
            if len(self.key_columns) == 1:
                raw = orjson.dumps(values[0])
            else:
                raw = orjson.dumps(
                    {n: v for (n, _), v in zip(self.key_columns, values, strict=False)}
                )
        else:
            raw = _kafka_encode(values[0], self.key_columns[0][1])
        if wstart is not None:
            raw += _window_suffix(wstart)
        return raw

    def window_bounds(self, wstart: Any) -> tuple[int, int]:
        """(WINDOWSTART, WINDOWEND) of a decoded window start."""
        if isinstance(wstart, tuple):
            return wstart
        assert self.window is not None
        return wstart, wstart + self.window.size_ms


def _window_suffix(wstart: Any) -> bytes:
    if isinstance(wstart, tuple):
        start, end = wstart
        return struct.pack(">qq", end, start)
    return struct.pack(">q", wstart)


def _coercer(t: SqlType) -> Any:
    n = t.name
    if n in ("INTEGER", "BIGINT"):

        def to_int(v: Any) -> int:
            if isinstance(v, bool):
                raise TypeError(v)
            if isinstance(v, float):
                if not v.is_integer():
                    raise ValueError(v)
                return int(v)
            if isinstance(v, str):
                return int(v.strip())
            if isinstance(v, int):
                return v
            raise TypeError(v)

        return to_int
    if n in ("DOUBLE", "DECIMAL"):

        def to_float(v: Any) -> float:
            if isinstance(v, bool) or isinstance(v, dict | list):
                raise TypeError(v)
            return float(v)

        return to_float
    if n == "STRING":

        def to_str(v: Any) -> str:
            if isinstance(v, dict | list):
                return orjson.dumps(v).decode()
            if isinstance(v, bool):
                return "true" if v else "false"
            return str(v)

        return to_str
    if n == "BOOLEAN":
        return caster(t)
    if n == "ARRAY":
        item = _coercer(t.params[0])

        def to_list(v: Any) -> list[Any]:
            if not isinstance(v, list):
                raise TypeError(v)
            return [None if x is None else item(x) for x in v]

        return to_list
    if n == "STRUCT":
        fields = [(fn, fn.upper(), _coercer(ft)) for fn, ft in t.params]

        def to_struct(v: Any) -> dict[str, Any]:
            if not isinstance(v, dict):
                raise TypeError(v)
            up = {k.upper(): x for k, x in v.items()}
            out = {}
            for fn, fu, conv in fields:
                x = v.get(fn, up.get(fu))
                out[fn] = None if x is None else conv(x)
            return out

        return to_struct
    if n == "MAP":
        val = _coercer(t.params[1])

        def to_map(v: Any) -> dict[str, Any]:
            if not isinstance(v, dict):
                raise TypeError(v)
            return {str(k): None if x is None else val(x) for k, x in v.items()}

        return to_map
    return lambda v: v


def _kafka_decode(raw: bytes, ty: SqlType, topic: str) -> Any:
    try:
        if ty.name == "STRING":
            return raw.decode("utf-8")
        if ty.name == "INTEGER":
            return struct.unpack(">i", raw)[0]
        if ty.name == "BIGINT":
            return struct.unpack(">q", raw)[0]
        if ty.name == "DOUBLE":
            return struct.unpack(">d", raw)[0]
    except (UnicodeDecodeError, struct.error) as exc:
        msg = f"Failed to deserialize key from topic: {topic}. {exc}"
        raise DeserializationError(msg) from None
    msg = f"KAFKA key format does not support {ty}"
    raise DeserializationError(msg)


def _kafka_encode(v: Any, ty: SqlType) -> bytes:
    if v is None:
        return b""
    if ty.name == "INTEGER":
        return struct.pack(">i", int(v))
    if ty.name == "BIGINT":
        return struct.pack(">q", int(v))
    if ty.name == "DOUBLE":
        return struct.pack(">d", float(v))
    if isinstance(v, bool):
        return b"true" if v else b"false"
    return str(v).encode("utf-8")


def check_key_format(key_format: str, key_columns: list[tuple[str, SqlType]]) -> None:
    if key_format not in ("KAFKA", "JSON", "NONE"):
        msg = (
            f"Unsupported KEY_FORMAT '{key_format}': the local endpoint supports KAFKA, JSON, NONE"
        )
        raise StatementError(msg)
    if key_format == "KAFKA" and len(key_columns) > 1:
        msg = "The 'KAFKA' format only supports a single field. Got: " + str(
            [f"`{n}` {t}" for n, t in key_columns]
        )
        raise StatementError(msg)
    if (
        key_format == "KAFKA"
        and key_columns
        and key_columns[0][1].name not in ("STRING", "INTEGER", "BIGINT", "DOUBLE")
    ):
        msg = f"The 'KAFKA' format does not support type '{key_columns[0][1].name}'"
        raise StatementError(msg)
    if key_format == "NONE" and key_columns:
        msg = "The 'NONE' format can only be used when no columns are defined. Got: " + str(
            [n for n, _ in key_columns]
        )
        raise StatementError(msg)
