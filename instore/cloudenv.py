"""Terraform outputs -> the `.env` that points every `instore` command at Confluent Cloud.

Pure functions plus one file writer: `instore cloud env` (instore/commands/cloud/) calls
them. Keys are the environment names of `instore.settings.Settings` fields. The values
`instore cloud` writes live between two marker lines, so the user's own lines survive and
`instore cloud down` can take ours out again.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from instore.errors import InstoreError
from instore.settings import DEV_KEYS, DEV_SHOPPER_TOKEN_SECRET

BEGIN = "# >>> instore cloud: written by `instore cloud env`; edit outside this block >>>"
END = "# <<< instore cloud <<<"

# Workloads whose Kafka key can go into .env (ksqlDB and the connector run in the cloud).
ENV_WORKLOADS = ("operator", "stream_app", "push_sink", "edge", "api")

# Values never shown on a terminal or in a log.
SECRET_KEYS = frozenset({
    "KAFKA_SASL_PASSWORD", "KSQLDB_API_SECRET", "ABLY_API_KEY", "SHOPPER_TOKEN_SECRET", "REDIS_PASSWORD",
    *(f"API_KEY_{role.upper()}" for role in DEV_KEYS),
})

# Settings that point at the embedded stack / local push hub and must go for the cloud.
LOCAL_ONLY_KEYS = ("ABLY_REST_HOST", "ABLY_PORT", "ABLY_TLS", "KAFKA_SSL_CA_LOCATION")

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:@+=,-]*$")


class CloudEnvError(InstoreError, ValueError):
    """The Terraform outputs lack something `.env` needs."""


def _value(outputs: Mapping[str, Any], name: str) -> Any:
    try:
        return outputs[name]["value"]
    except (KeyError, TypeError):
        msg = f"terraform output {name!r} is missing: run `instore cloud up` first"
        raise CloudEnvError(msg) from None


def cloud_env(
    outputs: Mapping[str, Any],
    *,
    workload: str = "operator",
    ably_api_key: str | None = None,
    user: Mapping[str, str | None] | None = None,
    previous: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The `.env` values for one workload from `terraform output -json`.

    ``user`` holds the `.env` lines outside our block, ``previous`` our block's last values.
    API keys per role and the shopper token secret: the user's own real value stays where it
    is (not repeated here); else the previous block's is kept; else a new one is generated,
    because production refuses the development defaults.
    """
    if workload not in ENV_WORKLOADS:
        msg = f"workload must be one of {', '.join(ENV_WORKLOADS)}, not {workload!r}"
        raise CloudEnvError(msg)
    user = user or {}
    previous = previous or {}
    keys = _value(outputs, "kafka_api_keys")
    if workload not in keys:
        msg = f"terraform output kafka_api_keys has no key for {workload!r}"
        raise CloudEnvError(msg)
    env: dict[str, str] = {
        "INSTORE_ENV": "production",
        "KAFKA_BOOTSTRAP_SERVERS": str(_value(outputs, "kafka_bootstrap_servers")),
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": str(keys[workload]["key"]),
        "KAFKA_SASL_PASSWORD": str(keys[workload]["secret"]),
        "KAFKA_PARTITIONS": str(_value(outputs, "kafka_partitions")),
        "KAFKA_REPLICATION_FACTOR": str(_value(outputs, "kafka_replication_factor")),
        "INSTORE_APP_ID": str(_value(outputs, "stream_app_id")),
    }
    if workload == "operator":
        ksql = _value(outputs, "ksqldb_api_key")
        env["KSQLDB_URL"] = str(_value(outputs, "ksqldb_endpoint"))
        env["KSQLDB_API_KEY"] = str(ksql["key"])
        env["KSQLDB_API_SECRET"] = str(ksql["secret"])
    if ably_api_key and user.get("ABLY_API_KEY") != ably_api_key:
        env["ABLY_API_KEY"] = ably_api_key
    carried = {f"API_KEY_{role.upper()}": dev for role, dev in DEV_KEYS.items()}
    carried["SHOPPER_TOKEN_SECRET"] = DEV_SHOPPER_TOKEN_SECRET
    carried["REDIS_PASSWORD"] = ""  # the embedded Redis beside the cloud (production needs one)
    for name, dev_value in carried.items():
        if _real(user.get(name), dev_value):
            continue
        old = previous.get(name)
        env[name] = old if old is not None and _real(old, dev_value) else secrets.token_urlsafe(24)
    return env


def _real(value: str | None, dev_default: str) -> bool:
    return bool(value) and value != dev_default


def secret_values(outputs: Mapping[str, Any], extra: Iterable[str | None] = ()) -> set[str]:
    """Every string inside a sensitive output (and ``extra``): what must never be printed."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    for item in outputs.values():
        if isinstance(item, Mapping) and item.get("sensitive"):
            walk(item.get("value"))
    for value in extra:
        if value:
            found.add(value)
            if ":" in value:  # an Ably key appId.keyId:secret: its secret half on its own too
                found.add(value.split(":", 1)[1])
    return {s for s in found if len(s) >= 6}


def mask_text(text: str, secret_set: Iterable[str]) -> str:
    """``text`` with every known secret replaced by ``****`` (longest first)."""
    for value in sorted(secret_set, key=len, reverse=True):
        text = text.replace(value, "****")
    return text


def masked(env: Mapping[str, str]) -> dict[str, str]:
    """What a terminal may show of ``env``: secrets become ``****``."""
    return {k: ("****" if k in SECRET_KEYS else v) for k, v in env.items()}


def _quote(value: str) -> str:
    if _SAFE_VALUE.match(value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def parse_env(text: str) -> dict[str, str | None]:
    return dict(dotenv_values(stream=io.StringIO(text)))


def block_values(text: str) -> dict[str, str | None]:
    """The values inside our marked block of a `.env` text."""
    inside, lines = False, []
    for line in text.splitlines():
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif inside:
            lines.append(line)
    return parse_env("\n".join(lines))


def _line_key(line: str) -> str | None:
    match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
    return match.group(1) if match else None


def strip_block(text: str, drop_keys: Iterable[str] = ()) -> str:
    """``text`` without our marked block and without assignments to ``drop_keys``."""
    drop = set(drop_keys)
    kept: list[str] = []
    inside = False
    for line in text.splitlines():
        if line.strip() == BEGIN:
            inside = True
            continue
        if line.strip() == END:
            inside = False
            continue
        if inside or _line_key(line) in drop:
            continue
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept) + ("\n" if kept else "")


def render_env(existing_text: str, env: Mapping[str, str], *, note: str = "") -> str:
    """The new `.env`: the user's lines (minus ones we now set or that point at the local
    stack), then our block."""
    rest = strip_block(existing_text, drop_keys=[*env, *LOCAL_ONLY_KEYS])
    lines = [BEGIN]
    if note:
        lines.extend(f"# {part}" for part in note.splitlines())
    lines.extend(f"{key}={_quote(value)}" for key, value in env.items())
    lines.append(END)
    return (rest + "\n" if rest else "") + "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)
