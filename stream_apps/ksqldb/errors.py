"""Errors of the local ksqlDB-compatible endpoint, each carrying ksqlDB's error code."""

from __future__ import annotations

from instore.errors import InstoreError

# ksqlDB's error codes (io.confluent.ksql.rest.Errors).
BAD_STATEMENT = 40001
QUERY_ENDPOINT = 40002
NOT_FOUND = 40400
SERVER_ERROR = 50000
BAD_REQUEST = 40000


def listed(items: list[str], conjunction: str) -> str:
    """ksqlDB's GrammaticalJoiner: ``A``, ``A and B``, ``A, B and C`` (or ``or``)."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


class KsqlError(InstoreError):
    """Base of every error the endpoint reports; ``code`` is ksqlDB's ``error_code``."""

    code = BAD_STATEMENT
    error_type = "statement_error"

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ParseError(KsqlError):
    """Bad SQL: the message carries ``line L:C`` like ksqlDB's parser."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}:{column}: {message}")
        self.line = line
        self.column = column


class StatementError(KsqlError):
    """A statement that parses but cannot run (unknown source, type mismatch...)."""


class QueryEndpointError(KsqlError):
    code = QUERY_ENDPOINT


class GenericError(KsqlError):
    error_type = "generic_error"
    code = BAD_REQUEST


class EvalError(InstoreError):
    """A row-level failure while evaluating an expression (goes to the processing log)."""
