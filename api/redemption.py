"""Redemption codes: what an offer shows on the shopper's phone (a QR code and the same text
for typing) and a till verifies.

A code is an HMAC-SHA256 of the offer id under the shopper-token secret (with its own label,
so it is no token and no pseudonym), truncated to 10 Crockford base-32 characters (50 bits):
short enough to type, impossible to guess or forge without the secret, and carrying no uid.
Knowing an offer id (the marketers' feed shows them) does not give its code.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re

import segno

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
LENGTH = 10
PATTERN = re.compile(f"^[{ALPHABET}]{{{LENGTH}}}$")
_TYPOS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_LABEL = b"instore:redemption-code:"


def code_of(secret: bytes, offer_id: str) -> str:
    """The redemption code of an offer (canonical form, no separator)."""
    digest = hmac.new(secret, _LABEL + offer_id.encode(), hashlib.sha256).digest()
    bits = int.from_bytes(digest[:8], "big") >> (64 - 5 * LENGTH)
    return "".join(ALPHABET[(bits >> (5 * i)) & 31] for i in reversed(range(LENGTH)))


def normalize(text: str) -> str | None:
    """A code as typed or scanned (any case, spaces or dashes, O for 0, I or L for 1) in its
    canonical form, or None when it cannot be a code."""
    code = re.sub(r"[\s-]", "", text).upper().translate(_TYPOS)
    return code if PATTERN.match(code) else None


def display(code: str) -> str:
    """The code as the phone shows it for typing: two groups of five."""
    return f"{code[:5]}-{code[5:]}"


def verifies(secret: bytes, offer_id: str, code: str) -> bool:
    """The code is this offer's (constant-time comparison)."""
    return hmac.compare_digest(code_of(secret, offer_id), code)


def qr_svg(code: str) -> str:
    """The code as a QR code (SVG, no XML declaration: inline in the page). The QR holds the
    canonical code only, what a till's scanner types."""
    out = io.BytesIO()
    segno.make(code, error="m").save(out, kind="svg", xmldecl=False, svgns=True, scale=7,
                                     border=2, title="redemption code", svgclass="qr")
    return out.getvalue().decode()
