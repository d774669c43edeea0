"""Errors the API answers with, in FastAPI's shapes (a 422 is always a list of
``{loc, msg, type}`` like request validation, so clients parse one format)."""

from __future__ import annotations

from typing import NoReturn

from fastapi import HTTPException, status


def unprocessable(loc: list[str | int], message: str) -> NoReturn:
    detail = [{"loc": loc, "msg": message, "type": "value_error"}]
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
