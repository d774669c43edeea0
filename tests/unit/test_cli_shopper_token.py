"""`instore shopper token UID`: a phone-page URL whose token the API accepts for that uid only."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from typer.testing import CliRunner

from instore import shopper_tokens as tokens
from instore.cli import app
from instore.settings import get_settings


def test_url_carries_a_token_for_that_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOPPER_TOKEN_SECRET", "s" * 40)
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["shopper", "token", "shopper 7/x", "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout.strip().splitlines()[-1])
        parts = urlsplit(out["url"])
        assert parts.path == "/phone"
        assert parse_qs(parts.query)["uid"] == ["shopper 7/x"]
        token = unquote(parts.fragment.removeprefix("token="))
        assert token == out["shopper_token"]
        assert tokens.claims(get_settings().shopper_secret, token).uid == "shopper 7/x"
        with pytest.raises(tokens.TokenError):
            tokens.claims(b"another secret of enough length 0123", token)
    finally:
        get_settings.cache_clear()


def test_bad_uid_is_one_sentence() -> None:
    res = CliRunner().invoke(app, ["shopper", "token", "x" * 129])
    assert res.exit_code == 2
    assert "a uid is 1 to 128 characters" in res.output


def test_qr_draws_the_link_for_a_phone_camera() -> None:
    """Issue 17: `--qr` draws the link on stderr (the URL alone stays on stdout); the drawing
    is a QR code of that exact URL (segno's own matrix for it, rendered as terminal blocks)."""
    import segno

    from instore.qr import reachable_from_a_phone, terminal_qr

    res = CliRunner().invoke(app, ["shopper", "token", "u-qr", "--qr"])
    assert res.exit_code == 0, res.output
    url = res.stdout.strip().splitlines()[-1]
    assert url.startswith("http") and "/phone?uid=u-qr#token=" in url
    assert "█" in res.stderr
    drawn = terminal_qr(url)
    size = segno.make(url, error="m").symbol_size(border=2)[1]
    assert len(drawn.splitlines()) == (size + 1) // 2  # two modules per line
    assert terminal_qr(url) == drawn and terminal_qr(url + "x") != drawn
    assert not reachable_from_a_phone("127.0.0.1") and reachable_from_a_phone("192.168.1.20")
