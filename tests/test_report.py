"""``shiftattack report``: figures and tables from real results folders, nothing recomputed."""

from __future__ import annotations

import json
import re

import pytest
from _browser import dump_dom

from shiftattack.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

COMMON = ["--model", "small_cnn", "--random-weights", "--data", "synthetic:test", "--limit", "8", "--quiet"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """An attack per mode and an exact certificate, made by the real commands on the synthetic set."""
    root = tmp_path_factory.mktemp("results")
    for mode in ("zero", "circular"):
        assert (
            main(
                ["attack", *COMMON, "--shifts", "grid:2", "--mode", mode, "--out", str(root / f"atk_{mode}")]
            )
            == 0
        )
    assert (
        main(["certify", *COMMON, "--shifts", "grid:1", "--mode", "zero", "--out", str(root / "cert")]) == 0
    )
    return root


def test_report_has_every_figure_and_the_numbers_of_the_documents(results, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(results), "--out", str(out)]) == 0
    assert "from 3 results" in capsys.readouterr().out
    for name in ("worst_case_vs_radius", "certified_vs_radius"):
        png = out / "figures" / f"{name}.png"
        assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == 2  # self-contained
    md = (out / "report.md").read_text()
    assert "figures/worst_case_vs_radius.png" in md
    cert = json.loads((results / "cert" / "certificate.json").read_text())
    atk = json.loads((results / "atk_zero" / "results.json").read_text())
    for text in (page, md):
        assert f"{100 * cert['certified_accuracy']:.2f} %" in text
        assert f"{100 * atk['worst_case_accuracy']:.2f} %" in text


def test_report_refuses_missing_and_foreign_inputs(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "no such results" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    assert main(["report", str(other), "--out", str(tmp_path / "r")]) == 2
    assert "not a results document" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "no results documents" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.html").exists()


def test_report_renders_in_a_real_browser_with_its_figures(results, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(results), "--out", str(out)]) == 0
    dom = dump_dom(out / "report.html")
    assert "<h2>Certificates</h2>" in dom
    assert 'data-figures-rendered="2"' in dom  # both figures decoded by the browser


def test_published_figures_appear_beside_ours_with_their_sources(results, tmp_path):
    from shiftattack.report import published

    out = tmp_path / "report"
    assert main(["report", str(results), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert published.SOURCES["engstrom2019"] in md  # attack results: the spatial-attack table, cited
    natural, _, _, grid = published.ENGSTROM["Standard"]
    assert f"| Standard | {natural:.1f} % |" in md and f"{grid:.1f} %" in md
    assert published.SOURCES["hendrycks2019"] not in md  # no corruption results: no corruption table


def test_stability_documents_give_the_flip_rate_figure_and_column(tmp_path):
    from shiftattack.data import load_dataset
    from shiftattack.jobs.stability import stability_document
    from shiftattack.models import create_model
    from shiftattack.runtime.results import write_json

    d = load_dataset("synthetic:test", limit=16)
    torch_model = create_model("small_cnn", num_classes=8, width=8).eval()
    doc = stability_document(torch_model, d.float_images(), d.labels, modes=("zero",), n_repeats=1, pad=2)
    doc["model"] = {"spec": "small_cnn"}
    (tmp_path / "stab").mkdir()
    write_json(tmp_path / "stab" / "stability.json", doc)
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "stab"), "--out", str(out)]) == 0
    png = out / "figures" / "flip_rate_vs_distance.png"
    assert png.stat().st_size > 5000
    md = (out / "report.md").read_text()
    assert f"{doc['flip_rate']['mean_flip_rate']:.2f} % (d ≤ 2 px)" in md
