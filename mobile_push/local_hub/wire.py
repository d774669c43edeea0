"""Requests and answers in Ably's REST shapes: the credential a request presents, JSON or
msgpack bodies, Ably's error answers and a message's size as Ably counts it."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgpack
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from mobile_push.local_hub.protocol import MAX_MESSAGE_BYTES
from mobile_push.local_hub.tokens import AuthError, Grant, TokenAuthority, unauthorized


def error_response(exc: AuthError) -> JSONResponse:
    """Ably's error answer: the JSON error object and the ``X-Ably-Error*`` headers."""
    return JSONResponse(
        exc.as_json(),
        status_code=exc.status,
        headers={"X-Ably-ErrorCode": str(exc.code), "X-Ably-ErrorMessage": exc.message[:200]},
    )


def grant_of(request: Request, authority: TokenAuthority) -> Grant:
    """What the request may do: Basic key or Bearer token in ``Authorization``, else an
    ``accessToken`` or ``key`` query parameter (browsers); 401/40101 without any."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        return authority.basic(value.strip())
    if scheme.lower() == "bearer" and value:
        return authority.bearer(value.strip())
    token = request.query_params.get("accessToken")
    if token:
        return authority.bearer(token)
    key = request.query_params.get("key")
    if key:
        return authority.basic(base64.b64encode(key.encode()).decode())
    msg = "Authentication required: Basic key or Bearer token"
    raise unauthorized(msg, 40101)


async def read_body(request: Request) -> Any:
    """The JSON or msgpack body (``Content-Type``); 413/40009 past four messages' worth."""
    raw = await request.body()
    if len(raw) > 4 * MAX_MESSAGE_BYTES:
        raise AuthError(413, 40009, "Maximum message length exceeded")
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("application/x-msgpack"):
            return msgpack.unpackb(raw, raw=False)
        return json.loads(raw or b"null")
    except (ValueError, msgpack.UnpackException):
        raise AuthError(400, 40000, "Request body is not valid JSON/msgpack") from None


def reply(request: Request, data: Any, status: int = 200) -> Response:
    """``data`` as msgpack when the client accepts it (the SDK's binary protocol), else JSON."""
    if request.headers.get("accept", "").startswith("application/x-msgpack"):
        return Response(
            msgpack.packb(data, use_bin_type=True),
            status_code=status,
            media_type="application/x-msgpack",
        )
    return JSONResponse(data, status_code=status)


def message_size(msg: dict[str, Any]) -> int:
    """Ably's message size: name, clientId, data and extras, in bytes."""
    data = msg.get("data")
    size = len(str(msg.get("name") or "").encode()) + len(str(msg.get("clientId") or "").encode())
    if isinstance(data, bytes | bytearray):
        size += len(data)
    elif isinstance(data, str):
        size += len(data.encode())
    elif data is not None:
        size += len(json.dumps(data).encode())
    if msg.get("extras") is not None:
        size += len(json.dumps(msg["extras"]).encode())
    return size
