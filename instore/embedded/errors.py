"""The embedded stack's one error: something the user must fix, said in one sentence."""

from __future__ import annotations

from instore.errors import InstoreError


class StackError(InstoreError, RuntimeError):
    """Something the user must fix (busy port, missing Java or jars); the message says what."""
