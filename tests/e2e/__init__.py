"""End-to-end tests: real pages in headless Chromium against real stacks.

``SCREENSHOTS`` is where the tests save what the pages look like: a temporary folder, so that
`make test` leaves the tree as it found it; `make screenshots` (INSTORE_UPDATE_SCREENSHOTS=1)
writes them to docs/screenshots/, which the README and the docs show."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS = _DOCS if os.environ.get("INSTORE_UPDATE_SCREENSHOTS") == "1" \
    else Path(tempfile.mkdtemp(prefix="instore-screenshots-"))
