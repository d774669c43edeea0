"""Our Server-Sent Events stream of one channel, ``GET
/channels/{name}/stream?accessToken=..&rewind=N`` (capability ``subscribe``): the pages'
fallback when ably-js cannot load, and the benchmarks' lighter subscriber. It resumes after
``Last-Event-ID`` and ends with error 40142 when the token expires (or the subscriber's close
reason: revoked, too slow)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from sse_starlette.sse import EventSourceResponse

from mobile_push.local_hub.state import HISTORY_KEEP, Hub, HubContext, Subscriber, context
from mobile_push.local_hub.tokens import unauthorized
from mobile_push.local_hub.wire import grant_of

router = APIRouter()


def backlog(history: list[dict[str, Any]], last_id: str | None, rewind: int) -> list[dict]:
    """What a new stream replays first: the messages after ``Last-Event-ID`` if it is still
    in history, else the last ``rewind`` ones (none without a rewind)."""
    if last_id:
        ids = [m.get("id") for m in history]
        if last_id in ids:
            return history[ids.index(last_id) + 1 :]
        return history[-max(rewind, 0) :] if rewind > 0 else []
    if rewind > 0:
        return history[-min(rewind, HISTORY_KEEP) :]
    return []


@router.get("/channels/{name}/stream")
async def stream(
    name: str, request: Request, ctx: Annotated[HubContext, Depends(context)], rewind: int = 0
) -> EventSourceResponse:
    grant = grant_of(request, ctx.authority)
    grant.require(name, "subscribe")
    replay = backlog(list(ctx.hub.channel(name).history), request.headers.get("last-event-id"),
                     rewind)
    sub = Subscriber(grant, kind="sse")
    ctx.hub.add_subscriber(sub)
    ctx.hub.subscribe(name, sub)
    return EventSourceResponse(
        _events(ctx.hub, sub, name, replay), ping=15, headers={"Cache-Control": "no-store"}
    )


async def _events(
    hub: Hub, sub: Subscriber, name: str, replay: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    """``attached``, the replay, then live messages until the token expires or the
    subscriber is closed; the subscriber leaves the hub however the stream ends."""
    expires = sub.grant.expires
    try:
        yield {"event": "attached", "data": json.dumps({"channel": name, "expires": expires})}
        for msg in replay:
            yield {"id": str(msg["id"]), "data": json.dumps(msg)}
        while True:
            timeout = None if expires is None else max(0.0, expires / 1000 - time.time())
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=timeout)
            except TimeoutError:
                err = unauthorized("Token expired", 40142).as_json()
                yield {"event": "error", "data": json.dumps(err)}
                return
            if item[0] == "close":  # revoked, or dropped for being too slow
                yield {"event": "error", "data": json.dumps({"error": item[2]})}
                return
            if item[0] == "message":
                msg = item[2]
                yield {"id": str(msg["id"]), "data": json.dumps(msg, default=str)}
    finally:
        hub.remove_subscriber(sub)
