"""Scan service logs for what must never be in them: a secret, or a shopper's position next to
their uid (docs/security.md). Used by the soak and by the log-scan test.

A *secret* is any of the values given (API keys, the Ably key's secret, the shopper-token
secret, issued shopper tokens). A *raw position with a uid* is a line that holds a known uid
and a coordinate-like number (a decimal with 4 or more places, as a latitude or longitude is
written).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from instore.settings import DEV_KEYS, Settings

COORDINATE = re.compile(r"(?<![\w.])-?\d{1,3}\.\d{4,}(?![\w.])")


@dataclass
class Finding:
    path: str
    line_no: int
    kind: str  # "secret" or "uid+position"
    what: str  # which secret (its name) or which uid; never the secret itself


@dataclass
class ScanReport:
    files: int = 0
    lines: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def secrets_of(settings: Settings) -> dict[str, str]:
    """Name -> value of every secret these settings hold (dev fallbacks included)."""
    found: dict[str, str] = {}
    for role in DEV_KEYS:
        key = settings.api_key(role)
        if key:
            found[f"api key {role}"] = key
    try:
        ably = settings.ably_key
        found["ably key secret"] = ably.split(":", 1)[-1]
    except ValueError:
        pass
    try:
        found["shopper token secret"] = settings.shopper_secret.decode()
    except ValueError:
        pass
    for name in ("kafka_sasl_password", "ksqldb_api_secret", "confluent_cloud_api_secret"):
        value = getattr(settings, name)
        if value is not None:
            found[name] = value.get_secret_value()
    return {k: v for k, v in found.items() if len(v) >= 6}


def scan(paths: Iterable[Path], secrets: dict[str, str], uids: Iterable[str]) -> ScanReport:
    report = ScanReport()
    uid_set = {u for u in uids if u}
    uid_re = re.compile("|".join(re.escape(u) for u in sorted(uid_set, key=len, reverse=True))) \
        if uid_set else None
    for path in paths:
        if not path.is_file():
            continue
        report.files += 1
        with path.open(errors="replace") as f:
            for n, line in enumerate(f, 1):
                report.lines += 1
                for name, value in secrets.items():
                    if value in line:
                        report.findings.append(Finding(str(path), n, "secret", name))
                if uid_re is not None and COORDINATE.search(line):
                    m = uid_re.search(line)
                    if m:
                        report.findings.append(Finding(str(path), n, "uid+position", m.group(0)))
    return report


def log_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.log") if p.is_file())
