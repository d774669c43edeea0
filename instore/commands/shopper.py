"""`instore shopper token UID`: a working phone-page link for a shopper, with a token.

The token is minted here with the shopper-token secret from the environment (the one the API
uses, ``SHOPPER_TOKEN_SECRET``), exactly as the API mints one when the shopper opts in: so a
tester can open a simulated shopper's phone page without going through the opt-in. The token
travels in the URL's fragment (``#token=``), which browsers do not send to the server; the page
keeps it on the device and takes it out of the address bar.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated
from urllib.parse import quote

import typer
from rich.console import Console

from instore.settings import get_settings
from instore.shopper_tokens import issue

app = typer.Typer(help="Shopper tools for testers: a phone-page link with a token.",
                  no_args_is_help=True)
err = Console(stderr=True)
MAX_UID = 128  # as the API's uid


@app.command("token")
def token(
    uid: Annotated[str, typer.Argument(help="The shopper's id (as on their positions).")],
    ttl_s: Annotated[int | None, typer.Option(help="Lifetime in seconds (default: "
                                              "SHOPPER_TOKEN_TTL_S, 12 h).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Last line: one JSON object.")] = False,
    qr: Annotated[bool, typer.Option("--qr", help="Also draw the link as a QR code (on stderr) "
                                     "for a phone's camera.")] = False,
) -> None:
    """Print the phone page's URL for UID with a fresh shopper token in it."""
    if not uid.strip() or len(uid) > MAX_UID:
        err.print(f"[bold red]error:[/] a uid is 1 to {MAX_UID} characters")
        raise typer.Exit(2)
    settings = get_settings()
    ttl = ttl_s if ttl_s is not None else settings.shopper_token_ttl_s
    if ttl <= 0:
        err.print("[bold red]error:[/] --ttl-s must be positive")
        raise typer.Exit(2)
    shopper_token = issue(settings.shopper_secret, uid, ttl_s=ttl)
    url = (f"{settings.public_scheme()}://{settings.host}:{settings.hub_port}/phone"
           f"?uid={quote(uid, safe='')}#token={quote(shopper_token, safe='')}")
    if qr:
        from instore.qr import terminal_qr  # noqa: PLC0415

        err.print(terminal_qr(url), highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps({"uid": uid, "url": url, "shopper_token": shopper_token,
                                     "expires_in_s": ttl}) + "\n")
        return
    sys.stdout.write(url + "\n")
    err.print(f"[dim]valid for {ttl:,} s for shopper {uid}, until they opt out or are erased[/]")
