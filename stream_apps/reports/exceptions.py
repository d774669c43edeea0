"""The reports' errors: one base, each message one sentence a user can act on."""

from __future__ import annotations

from instore.errors import InstoreError


class ReportError(InstoreError):
    """A report that cannot be rendered (no archive, unknown store, a day not over yet)."""


class NoArchive(ReportError):
    pass


class UnknownStore(ReportError):
    pass


class BadDay(ReportError):
    pass
