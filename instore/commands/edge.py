"""`instore edge ...`: The edge box: depth camera to shopper positions, calibration, view."""

from __future__ import annotations

import typer

app = typer.Typer(help="The edge box: depth camera to shopper positions, calibration, view.", no_args_is_help=True)
