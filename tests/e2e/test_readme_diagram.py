"""The README's architecture diagram renders: its Mermaid block, drawn by Mermaid (npm, as
GitHub draws it) in headless Chromium, gives an SVG with every part's node and no syntax error.
The README stays a front page: at most ~200 lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.test_api_dashboard import CHROMIUM_ARGS

pytestmark = pytest.mark.e2e
MERMAID = ROOT / "tests" / "e2e" / "vendor" / "mermaid" / "mermaid.min.js"
README = ROOT / "README.md"


def test_readme_is_a_front_page() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_readme_mermaid_diagram_renders() -> None:
    from playwright.sync_api import sync_playwright

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian's chromium is missing: run `make setup-dev`")
    if not MERMAID.exists():
        pytest.skip("Mermaid is not installed: run `make setup-dev` (scripts/install-mermaid.sh)")
    blocks = re.findall(r"```mermaid\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_content("<!doctype html><html><body><div id='out'></div></body></html>")
            page.add_script_tag(path=str(MERMAID))
            result = page.evaluate(
                """async (text) => {
                     mermaid.initialize({ startOnLoad: false });
                     try {
                       const { svg } = await mermaid.render("readme", text);
                       return { svg };
                     } catch (e) { return { error: String(e && e.message || e) }; }
                   }""", blocks[0])
        finally:
            browser.close()
    assert "error" not in result, result.get("error")
    svg = result["svg"]
    assert svg.startswith("<svg") and "Syntax error" not in svg
    for label in ("customers_locations", "NEARBY_CUSTOMERS", "Faust worker", "Push sink",
                  "Archiver", "Redis serving store", "Phone page", "Kiosk page"):
        assert label in svg, label
