"""The project's one base exception.

Every error the project raises on purpose derives from :class:`InstoreError` (and, where it
fits, from the built-in it refines: ``ValueError`` for bad input, ``RuntimeError`` for a state,
``LookupError`` for something missing), so a caller can catch the project's errors apart from
bugs, and `instore` prints any that reaches it as one line (``error: ...``, exit 1) instead of
a traceback. The message says what went wrong and, where the user can act, what to do."""

from __future__ import annotations


class InstoreError(Exception):
    """An error the project raises on purpose, with a message fit for one line of output."""
