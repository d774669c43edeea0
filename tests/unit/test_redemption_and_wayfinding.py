"""Redemption codes (what the phone shows, what the till types) and the "show me where" map:
pure logic."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from api import redemption, wayfinding
from instore.records import StoreProduct

SECRET = b"a-test-secret-of-some-length-0123456789"
ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64)


@given(ids)
def test_a_code_survives_display_and_sloppy_typing(offer_id: str) -> None:
    code = redemption.code_of(SECRET, offer_id)
    assert redemption.PATTERN.match(code)
    shown = redemption.display(code)
    typed = shown.lower().replace("0", "o").replace("1", "l").replace("-", " ")
    assert redemption.normalize(typed) == code
    assert redemption.verifies(SECRET, offer_id, redemption.normalize(typed) or "")


@given(ids, ids)
def test_a_code_is_one_offer_s_under_one_secret(a: str, b: str) -> None:
    """Another offer, or another secret, gives another code (a 50-bit collision is possible in
    principle, never in a run this size)."""
    assume(a != b)
    assert redemption.code_of(SECRET, a) != redemption.code_of(SECRET, b)
    assert not redemption.verifies(b"another-secret", a, redemption.code_of(SECRET, a))


@pytest.mark.parametrize("text", ["", "12345", "ABCDE-FGHJK-MNPQR", "UUUUUUUUUU", "ÄÄÄÄÄÄÄÄÄÄ",
                                  "ABCDE_FGHJK"])
def test_what_cannot_be_a_code(text: str) -> None:
    assert redemption.normalize(text) is None


def test_the_qr_code_holds_the_code_only() -> None:
    svg = redemption.qr_svg(redemption.code_of(SECRET, "offer-1"))
    assert svg.startswith("<svg") and "offer-1" not in svg


def _product(sku: int, lat: float, lon: float, country: str = "DE") -> StoreProduct:
    return StoreProduct(sku=sku, store_id="s", segment="x", name=f"p{sku}", latitude=lat,
                        longitude=lon, country=country)


@pytest.mark.parametrize(("country", "units"), [("US", "ft"), ("us", "ft"), ("DE", "m"),
                                                ("GB", "m"), (None, "m")])
def test_units_follow_the_store_s_country(country: str | None, units: str) -> None:
    assert wayfinding.units_of(country) == units


def test_the_map_puts_the_product_north_of_the_shopper_at_the_right_distance() -> None:
    target = _product(1, 48.0 + 20 / 111_195.0, 11.0)
    other = _product(2, 48.0, 11.0005)
    m = wayfinding.floor_map("s", [target, other], target, (48.0, 11.0, 500), "DE")
    assert m.units == "m" and m.distance == pytest.approx(20.0, abs=0.05)
    assert m.you is not None and m.product.y - m.you.y == pytest.approx(20.0, abs=0.05)
    assert m.route[0].x == m.you.x and m.route[-1].y == m.product.y
    for x, y in [*m.shelves, (m.you.x, m.you.y), (m.product.x, m.product.y)]:
        assert 0 <= x <= m.width and 0 <= y <= m.height
    feet = wayfinding.floor_map("s", [target, other], target, (48.0, 11.0, 500), "US")
    assert feet.distance == pytest.approx(20.0 / 0.3048, abs=0.2)
    assert feet.width == pytest.approx(m.width / 0.3048, abs=0.1)


def test_without_a_position_there_is_no_way_to_draw() -> None:
    target = _product(1, 48.0, 11.0)
    m = wayfinding.floor_map("s", [target], target, None, None)
    assert m.you is None and m.distance is None and m.route == []
    assert m.width >= wayfinding.MIN_SIDE_M and m.height >= wayfinding.MIN_SIDE_M
