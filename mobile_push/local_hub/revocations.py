"""Token revocations kept across restarts: the hub's tokens are self-contained and outlive a
restart, so their revocations must too (``<data_dir>/push-hub/revocations.json``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from instore.settings import Settings
from mobile_push.local_hub.tokens import TokenAuthority

log = logging.getLogger(__name__)


def revocations_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "push-hub" / "revocations.json"


def load_revocations(authority: TokenAuthority, path: Path) -> None:
    """Apply the saved revocations; a missing file is a fresh hub, an unreadable one is logged."""
    try:
        items = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        log.warning("push hub: revocations file unreadable (%s); starting without", exc)
        return
    if isinstance(items, list):
        log.info("push hub: %d token revocation(s) loaded", authority.load_revocations(items))


def save_revocations(authority: TokenAuthority, path: Path) -> None:
    """Small and rare (one write per erasure): the whole set, replaced atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(authority.revocations_json()))
        tmp.replace(path)
    except OSError as exc:
        log.warning("push hub: could not save revocations (%s); they hold until restart", exc)
