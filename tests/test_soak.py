"""The soak benchmark, small: every job passes, no result lost or doubled, the same bytes each pass."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def test_small_soak_passes(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    out = tmp_path / "soak.json"
    assert soak.main_soak(["--n-images", "30", "--repeats", "2", "--max-growth-mb", "200", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["ok"] and not doc["problems"] and len(doc["passes"]) == 2
    assert "soak: PASS" in capsys.readouterr().out


def test_record_check_finds_lost_duplicated_and_disordered_images():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    ok = {"images": [{"index": i} for i in range(3)]}
    assert soak.check_records(ok, 3) == []
    assert soak.check_records({"images": [{"index": 0}, {"index": 0}, {"index": 2}]}, 3) == ["1 duplicated images"]
    assert soak.check_records({"images": [{"index": 1}, {"index": 0}]}, 3) == [
        "2 records for 3 images", "records out of order"]
