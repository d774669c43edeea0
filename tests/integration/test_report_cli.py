"""`instore report` as a user runs it: a subprocess over a small archive (ARCHIVE_URL), the
JSON line, the files; wrong input answers one sentence and exit 1; `instore up` supervises the
daily loop only when it is on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instore.embedded.services import service_specs
from instore.settings import Settings
from tests.conftest import ROOT
from tests.unit.test_reports import build_archive

pytestmark = pytest.mark.integration


def _run(archive: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ARCHIVE_URL": str(archive), "DWELL_GAP_S": "5", "BASKET_WINDOW_S": "7200"}
    return subprocess.run([sys.executable, "-m", "instore", "report", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    build_archive(root)
    return root


def test_report_writes_its_files_and_prints_the_figures(archive: Path) -> None:
    res = _run(archive, "--store", "s1", "--day", "2026-01-01", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["store_id"] == "s1" and out["day"] == "2026-01-01" and out["has_data"]
    assert set(out["paths"]) == {"html", "pdf", "json"}
    for path in out["paths"].values():
        assert Path(path).is_file() and Path(path).parent == archive / "reports" / "2026-01-01"
    figures = out["figures"]
    assert figures["totals"]["redemptions"] == 7 and figures["totals"]["offers"] == 9
    assert [p["shoppers"] for p in figures["pairs"]] == [2, 1]
    html = Path(out["paths"]["html"]).read_text()
    assert html.count("<svg") == 6 and "10% off apples" in html
    assert Path(out["paths"]["pdf"]).read_bytes().startswith(b"%PDF")


def test_elsewhere_without_a_pdf_and_an_empty_day(archive: Path, tmp_path: Path) -> None:
    res = _run(archive, "--store", "s2", "--day", "2026-01-05", "--out", str(tmp_path),
               "--no-pdf", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["has_data"] and set(out["paths"]) == {"html", "json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2_2026-01-05.html",
                                                          "s2_2026-01-05.json"]
    assert "No data for store s2 on 2026-01-05" in (tmp_path / "s2_2026-01-05.html").read_text()


@pytest.mark.parametrize(("args", "sentence"), [
    (["--store", "s1", "--day", "2026-02-30"], "error: --day must be a date like"),
    (["--store", "s1", "--day", "yesterday"], "error: --day must be a date like"),
    (["--store", "s1", "--day", "2999-01-01"], "error: 2999-01-01 has not begun yet"),
    (["--store", "nowhere", "--day", "2026-01-01"], "error: no store 'nowhere' in the archive"),
    (["--day", "2026-01-01"], "error: give the store with --store"),
])
def test_wrong_input_is_one_sentence(archive: Path, args: list[str], sentence: str) -> None:
    res = _run(archive, *args)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert res.stderr.startswith(sentence), res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2  # one sentence (rich may wrap it)


def test_no_archive_is_one_sentence(tmp_path: Path) -> None:
    res = _run(tmp_path / "missing", "--store", "s1", "--day", "2026-01-01")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "no archive at" in res.stderr and "instore up" in " ".join(res.stderr.split())


def test_up_supervises_the_daily_loop_when_it_is_on(tmp_path: Path) -> None:
    on = [s for s in service_specs(Settings(report_hour_utc=2), tmp_path) if s.name == "reports"]
    assert len(on) == 1 and on[0].argv[-2:] == ["report", "--daily"]
    off = service_specs(Settings(report_hour_utc=-1), tmp_path)
    assert "reports" not in [s.name for s in off]


def test_the_daily_loop_stops_on_sigterm(archive: Path) -> None:
    env = os.environ | {"ARCHIVE_URL": str(archive), "REPORT_HOUR_UTC": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "instore", "report", "--daily"], env=env,
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "reports: started" in first, first
        proc.terminate()
        assert proc.wait(timeout=60) == 0
        rest = proc.stderr.read()
        assert "reports: stopped" in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    off = subprocess.run([sys.executable, "-m", "instore", "report", "--daily"],
                         env=env | {"REPORT_HOUR_UTC": "-1"}, cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert off.returncode == 1 and off.stderr.startswith("error: daily reports are off")
