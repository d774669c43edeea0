"""A bad setting in the environment is one line naming it, never a traceback or its value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(("env", "named"), [
    ({"DWELL_S": "-1"}, "DWELL_S: Input should be greater than or equal to 0"),
    ({"PUSH_SINK_INSTANCE_ID": "two words"}, "PUSH_SINK_INSTANCE_ID: String should match"),
    ({"CAP_PER_HOUR": "lots"}, "CAP_PER_HOUR: Input should be a valid integer"),
])
def test_a_bad_setting_is_one_line(env: dict[str, str], named: str) -> None:
    res = subprocess.run([sys.executable, "-m", "instore", "push", "sink"], env=os.environ | env,
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    err = " ".join(res.stderr.split())
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert err.startswith("error: bad setting ") and named in err, err
    assert next(iter(env.values())) not in err.replace(named, "")  # the value is not echoed
