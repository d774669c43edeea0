"""`instore push ...`: Offers to phones and kiosks: the Ably push sink and the local push hub."""

from __future__ import annotations

import typer

app = typer.Typer(help="Offers to phones and kiosks: the Ably push sink and the local push hub.", no_args_is_help=True)
