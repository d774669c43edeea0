"""The local push hub: an Ably-compatible stand-in for laptops and tests (never used with Ably).

It speaks the part of Ably's REST and realtime protocols the ``ably`` SDK and ably-js use, plus a
Server-Sent Events stream per channel, and serves the product's phone and kiosk pages
(``mobile_push.pages``). The production push (``mobile_push.sink`` and its rules) does not
import it (an import-linter contract, ``pyproject.toml``).

- ``app``: the hub (``create_app``, ``serve``: ``instore push hub``): channels in memory,
  Ably's REST routes, the SSE streams, the pages;
- ``realtime``: Ably's realtime protocol over WebSocket;
- ``tokens``, ``capability``: Ably key and token auth, capabilities (pure logic);
- ``sse_client``: a Python subscriber of the SSE streams (tests, benchmarks).
"""
