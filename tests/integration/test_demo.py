"""`instore demo` as `make demo` runs it, but not on a terminal (as in CI or piped to a file):
it starts its own stack, walks shoppers, prints the page URLs and ends with offers made."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from instore.embedded.services import child_env_for, isolated_settings
from instore.settings import get_settings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_demo_prints_the_pages_and_shows_offers() -> None:
    settings = isolated_settings(get_settings())
    # its own embedded stack on free ports: the ports, not an external broker's address
    env = {k: v for k, v in (os.environ | child_env_for(settings)).items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    res = subprocess.run([sys.executable, "-m", "instore", "demo", "--seconds", "20", "--json"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=420,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    err = " ".join(res.stderr.split())
    for page in (f"http://{settings.host}:{settings.hub_port}/phone?uid=",
                 f"http://{settings.host}:{settings.hub_port}/kiosk?store=",
                 f"http://{settings.host}:{settings.api_port}/dashboard",
                 f"http://{settings.host}:{settings.api_port}/docs"):
        assert page in err, page
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["positions"] > 0
    assert summary["offers"] > 0, summary
