"""The words of Ably's protocols the local hub speaks: realtime actions (TR2) and flags (TR3),
the message size limit, and Ably's error object. Constants and one pure function."""

from __future__ import annotations

from typing import Any

# TR2 actions
HEARTBEAT, ACK, NACK, CONNECT, CONNECTED, DISCONNECT, DISCONNECTED = 0, 1, 2, 3, 4, 5, 6
CLOSE, CLOSED, ERROR, ATTACH, ATTACHED, DETACH, DETACHED = 7, 8, 9, 10, 11, 12, 13
PRESENCE, MESSAGE, SYNC, AUTH = 14, 15, 16, 17
# TR3 flags
HAS_BACKLOG = 1 << 1
FLAG_PUBLISH = 1 << 17
FLAG_SUBSCRIBE = 1 << 18

MAX_MESSAGE_BYTES = 65_536  # Ably's default maximum message size (REST and realtime)


def error_info(code: int, status: int, message: str) -> dict[str, Any]:
    """Ably's ErrorInfo: code, HTTP status, message and the help link."""
    return {
        "code": code,
        "statusCode": status,
        "message": message,
        "href": f"https://help.ably.io/error/{code}",
    }
