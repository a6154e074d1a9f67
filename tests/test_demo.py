"""``shiftattack demo --quick``: the whole pipeline end to end on the built-in data, and its errors."""

from __future__ import annotations

import json

import pytest

from shiftattack.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_demo_writes_every_document_and_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model " in printed and "worst case (grid:2, zero)" in printed and "certified (grid:1, zero)" in printed
    assert "Against worst-case shifts (grid:2, zero mode, 32 images)" in printed  # the sentence, then the times
    assert "time per stage: train" in printed and "report" in printed
    for name in ("baseline", "blurpool"):
        assert (out / "models" / name / "model.pt").is_file()
        doc = json.loads((out / "attack" / f"{name}_zero" / "results.json").read_text())
        assert doc["threat"]["spec"] == "grid:2" and doc["accuracy_vs_radius"]
        cert = json.loads((out / "certify" / name / "certificate.json").read_text())
        at_one = {p["radius"]: p["worst_case_accuracy"] for p in doc["accuracy_vs_radius"]}[1]
        assert cert["certified_accuracy"] == at_one  # exact grid:1 certificate = the attack at K = 1
        assert (out / "corruptions" / name / "results.json").is_file()
        assert set(json.loads((out / "stability" / name / "stability.json").read_text())["consistency"]) == {
            "zero",
            "circular",
        }
    page = (out / "report.html").read_text()
    figures = (
        "worst_case_vs_radius",
        "consistency",
        "diagonal_curve",
        "flip_rate_vs_distance",
        "certified_vs_radius",
        "corruption_errors",
        "filter_smoothness",
    )
    assert page.count("data:image/png;base64,") == len(figures)
    for fig in figures:
        assert (out / "figures" / f"{fig}.png").stat().st_size > 5000


def test_demo_refuses_bad_settings_before_writing(tmp_path, capsys):
    assert main(["demo", "--dataset", "cifar10", "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    existing = tmp_path / "full"
    existing.mkdir()
    (existing / "x").write_text("x")
    assert main(["demo", "--quick", "--out", str(existing), "--quiet"]) == 2
    assert "overwrite" in capsys.readouterr().err
