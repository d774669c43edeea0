"""The one Server-Sent Events parser (mobile_push.local_hub.sse_client.SseParser) on plain lines."""

from __future__ import annotations

from mobile_push.local_hub.sse_client import SseEvent, SseParser


def _events(lines: list[str]) -> list[SseEvent]:
    parser = SseParser()
    return [ev for line in lines if (ev := parser.feed(line)) is not None]


def test_events_ids_and_multiline_data() -> None:
    got = _events([
        "event: attached", 'data: {"channel":"shopper:u1"}', "",
        "id: 7", 'data: {"id":"o-1",', 'data: "x":1}', "",
        "event:message", "data:plain", "",
    ])
    assert got == [SseEvent("attached", '{"channel":"shopper:u1"}', None),
                   SseEvent("message", '{"id":"o-1",\n"x":1}', "7"),
                   SseEvent("message", "plain", None)]


def test_comments_and_empty_events_are_skipped_and_fields_reset() -> None:
    got = _events([": keep-alive", "", "event: error", "", "data: after", "", "id: 9", "", "data: x", ""])
    # a keep-alive, and an event with no data, are no events; fields do not leak into the next
    assert got == [SseEvent("message", "after", None), SseEvent("message", "x", None)]


def test_an_unfinished_event_is_not_delivered() -> None:
    assert _events(["data: half"]) == []
