"""Logging set-up: one line per lifecycle event, rich on a terminal, plain otherwise."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if getattr(root, "_instore_configured", False):
        return
    if sys.stderr.isatty():
        from rich.logging import RichHandler  # noqa: PLC0415

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=True)
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiokafka", "faust", "mode", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._instore_configured = True  # type: ignore[attr-defined]  # noqa: SLF001 - a marker on the root logger
