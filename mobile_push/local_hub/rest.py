"""Ably's REST routes, as the ``ably`` SDK calls them: ``GET /time``, ``POST
/keys/{keyName}/requestToken``, ``POST /channels/{name}/messages`` (Basic or Bearer; capability
``publish``; message ``id`` de-duplicated per channel), ``GET /channels/{name}/messages``
(capability ``history``) and ``POST /keys/{keyName}/revokeTokens`` (Basic auth with that key)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from mobile_push.local_hub.protocol import MAX_MESSAGE_BYTES
from mobile_push.local_hub.revocations import save_revocations
from mobile_push.local_hub.state import HubContext, context
from mobile_push.local_hub.tokens import AuthError, Grant
from mobile_push.local_hub.wire import grant_of, message_size, read_body, reply

log = logging.getLogger(__name__)

router = APIRouter()
Ctx = Annotated[HubContext, Depends(context)]


@router.get("/time")
async def server_time() -> list[int]:
    return [time.time_ns() // 1_000_000]


@router.post("/keys/{key_name}/requestToken")
async def request_token(key_name: str, request: Request, ctx: Ctx) -> Response:
    body = await read_body(request)
    if not isinstance(body, dict):
        raise AuthError(400, 40000, "TokenRequest must be a JSON object")
    return reply(request, ctx.authority.request_token(key_name, body))


def _check_messages(body: Any, grant: Grant) -> list[dict[str, Any]]:
    """The messages of a publish body (one or a list), each within Ably's size limit and
    with a clientId the token allows."""
    messages = body if isinstance(body, list) else [body]
    if not messages or not all(isinstance(m, dict) for m in messages):
        raise AuthError(400, 40000, "Expected a message object or a list of them")
    for m in messages:
        if message_size(m) > MAX_MESSAGE_BYTES:
            raise AuthError(
                400, 40009, f"Maximum message length exceeded ({MAX_MESSAGE_BYTES} bytes)"
            )
        cid = m.get("clientId")
        if cid is not None and grant.client_id not in (None, "*", cid):
            raise AuthError(
                400, 40012, "Message clientId is incompatible with the token's clientId"
            )
    return messages


@router.post("/channels/{name}/messages")
async def publish(name: str, request: Request, ctx: Ctx) -> Response:
    grant = grant_of(request, ctx.authority)
    grant.require(name, "publish")
    messages = _check_messages(await read_body(request), grant)
    serials = ctx.hub.publish(name, messages, grant.client_id)
    return reply(
        request,
        {"channel": name, "messageId": messages[0].get("id"), "serials": serials},
        status=201,
    )


@router.get("/channels/{name}/messages")
async def history(
    name: str, request: Request, ctx: Ctx, limit: int = 100, direction: str = "backwards"
) -> Response:
    grant = grant_of(request, ctx.authority)
    grant.require(name, "history")
    limit = max(1, min(limit, 1000))
    items = list(ctx.hub.channel(name).history)
    items = list(reversed(items))[:limit] if direction != "forwards" else items[:limit]
    return reply(request, items)


@router.post("/keys/{key_name}/revokeTokens")
async def revoke_tokens(key_name: str, request: Request, ctx: Ctx) -> Response:
    """Ably's token revocation: Basic auth with the issuing key; targets ``clientId:<id>``
    or ``channel:<name>``. Later requests with those tokens get 401/40141, and their open
    streams and WebSocket connections are closed (at once, or after the reauth margin)."""
    grant = grant_of(request, ctx.authority)
    body = await read_body(request)
    if not isinstance(body, dict):
        raise AuthError(400, 40000, "Expected {targets: [...]}")
    result = ctx.authority.revoke(grant, key_name, body)
    if result["successCount"]:
        save_revocations(ctx.authority, ctx.revocations)
    forgotten = _forget_revoked_clients(ctx, result["results"])
    closed = _close_revoked_streams(ctx, result["results"])
    log.info(
        "tokens revoked: %d target(s), %d open stream(s) closed, %d message(s) forgotten",
        result["successCount"],
        closed,
        forgotten,
    )
    return reply(request, result)


def _forget_revoked_clients(ctx: HubContext, results: list[dict[str, Any]]) -> int:
    """Drop the channel history of every shopper whose tokens were revoked (erasure)."""
    forgotten = 0
    for r in results:
        target = str(r.get("target", ""))
        if "issuedBefore" in r and target.startswith("clientId:"):
            forgotten += ctx.hub.forget_client(target.removeprefix("clientId:"))
    return forgotten


def _close_revoked_streams(ctx: HubContext, results: list[dict[str, Any]]) -> int:
    """Close the streams revoked now; those whose revocation applies after the reauth margin
    are closed when it does."""
    delays = {
        r["appliesAt"] - time.time_ns() // 1_000_000 for r in results if "appliesAt" in r
    }
    closed = ctx.hub.close_revoked(ctx.authority)
    for delay in sorted(d for d in delays if d > 0):
        asyncio.get_running_loop().call_later(
            delay / 1000 + 0.01, ctx.hub.close_revoked, ctx.authority
        )
    return closed
