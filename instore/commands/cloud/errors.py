"""The one error of `instore cloud`."""

from __future__ import annotations

from instore.errors import InstoreError


class CloudError(InstoreError):
    """Something the user can fix; the message says how, in one sentence."""
