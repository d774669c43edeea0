"""A QR code in the terminal, so a phone on the same network opens a page by pointing its camera
at the screen (segno: pure Python, no image files)."""

from __future__ import annotations

import io

import segno

from instore.settings import is_loopback


def terminal_qr(url: str) -> str:
    """``url`` as a QR code of half-height block characters (two rows per line)."""
    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


def reachable_from_a_phone(host: str) -> bool:
    """A page on ``host`` can be opened from another device (not a loopback address)."""
    return not is_loopback(host)
