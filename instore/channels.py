"""The Ably channels offers are pushed on: one definition for the sink that publishes to them,
the API that issues tokens scoped to them, the local hub, the Ably connector's template and the
lineage view."""

from __future__ import annotations


def shopper_channel(uid: str) -> str:
    """A shopper's phone: offers for this uid only (their token may subscribe to it alone)."""
    return f"shopper:{uid}"


def kiosk_channel(store_id: str, kiosk_id: str) -> str:
    """One kiosk of one store: offers for the shopper checked in at it."""
    return f"kiosk:{store_id}:{kiosk_id}"
