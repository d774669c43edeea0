"""The local push hub: an Ably-compatible stand-in for laptops and tests (never used with Ably).

It speaks the part of Ably's REST and realtime protocols the ``ably`` SDK and ably-js use, plus a
Server-Sent Events stream per channel, and serves the product's phone and kiosk pages
(``mobile_push.pages``). The production push (``mobile_push.sink`` and its rules) does not
import it (an import-linter contract, ``pyproject.toml``).

- ``app``: the FastAPI app (``create_app``, ``serve``: ``instore push hub``), its middleware
  and lifecycle; ``rest``: Ably's REST routes; ``stream``: the SSE stream route;
- ``state``: channels, history, de-duplication and live subscribers, in memory;
- ``realtime``: Ably's realtime protocol over WebSocket; ``protocol``: its actions, flags and
  error object;
- ``tokens``, ``capability``: Ably key and token auth, capabilities (pure logic);
- ``revocations``: token revocations kept across restarts;
- ``wire``: requests and answers in Ably's shapes (credentials, JSON/msgpack, errors);
- ``sse_client``: a Python subscriber of the SSE streams (tests, benchmarks).
"""
