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


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """A baseline and a blurred model (weights moved off their initialisation, so that their per-image
    results differ), each attacked in circular mode, with the stability and certificate documents of
    the real commands."""
    import torch
    from _models import perturbed

    from shiftattack.models import create_model

    root = tmp_path_factory.mktemp("two")
    (root / "models").mkdir()
    for k, (name, spec) in enumerate((("base", "cifar_convnet(width=8)"), ("blur", "cifar_convnet_blur3(width=8)"))):
        torch.manual_seed(k)
        torch.save(perturbed(create_model(spec), seed=k).state_dict(), root / "models" / f"{name}.pt")
        common = ["--weights", str(root / "models" / f"{name}.pt"), "--data", "synthetic:test",
                  "--limit", "48", "--quiet"]
        assert main(["attack", "--model", spec, *common, "--shifts", "grid:2", "--mode", "circular",
                     "--out", str(root / "attack" / name)]) == 0
        assert main(["certify", "--model", spec, *common, "--shifts", "grid:1", "--mode", "circular",
                     "--out", str(root / "certify" / name)]) == 0
        assert main(["stability", "--model", spec, *common, "--modes", "circular", "--repeats", "1",
                     "--out", str(root / "stability" / name)]) == 0
    return root


def test_headline_numbers_and_interval_equal_an_independent_computation(two_models):
    from scipy import stats

    from shiftattack.report import collect
    from shiftattack.report.headline import headline

    head = headline(collect([two_models / d for d in ("attack", "certify", "stability")]))
    docs = {n: json.loads((two_models / "attack" / n / "results.json").read_text()) for n in ("base", "blur")}
    cons = {n: json.loads((two_models / "stability" / n / "stability.json").read_text()) for n in ("base", "blur")}
    certs = {n: json.loads((two_models / "certify" / n / "certificate.json").read_text()) for n in ("base", "blur")}
    rows = {r[0]: r for r in head.rows}
    for n, spec in (("base", "cifar_convnet(width=8)"), ("blur", "cifar_convnet_blur3(width=8)")):
        assert rows[spec][1:] == [f"{100 * docs[n]['clean_accuracy']:.1f} %",
                                  f"{100 * docs[n]['worst_case_accuracy']:.1f} %",
                                  f"{cons[n]['consistency']['circular']:.1f} %",
                                  f"{100 * certs[n]['certified_accuracy']:.1f} %"]
    a = [float(r["robust"]) for r in docs["blur"]["images"]]
    b = [float(r["robust"]) for r in docs["base"]["images"]]
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)  # paired t interval, by scipy
    d = head.values["difference"]
    assert head.values["best"] == "cifar_convnet_blur3(width=8)" and head.values["baseline"] == "cifar_convnet(width=8)"
    assert d["estimate"] == pytest.approx(100 * (sum(a) - sum(b)) / len(a))
    assert (d["low"], d["high"]) == (pytest.approx(100 * ci.low), pytest.approx(100 * ci.high))
    assert f"[95 % paired interval {d['low']:+.1f}, {d['high']:+.1f}]" in head.sentence
    assert ("inconclusive" in head.sentence) == (d["low"] <= 0 <= d["high"])


def test_report_opens_with_the_headline_and_the_curve_on_its_first_screen(two_models, tmp_path):
    import numpy as np
    from _browser import screenshot
    from PIL import Image

    out = tmp_path / "report"
    assert main(["report", str(two_models), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    first = page.index("<h2>")
    assert page[first:].startswith("<h2>Headline</h2>")
    assert page.index('id="worst_case_vs_radius"') < page.index("<h2>Shift attacks</h2>")  # the curve next
    dom = screenshot(out / "report.html", tmp_path / "first.png", 1280, 900)
    sentence = re.search(r'<p id="headline-sentence"><strong>(.*?)</strong></p>', dom).group(1)
    assert sentence.startswith("Against worst-case shifts (grid:2, circular mode, 48 images)")
    bottom = int(re.search(r'data-headline-bottom="(\d+)"', dom).group(1))
    viewport = int(re.search(r'data-viewport-height="(\d+)"', dom).group(1))  # 900 less the window's frame
    assert 600 <= viewport <= 900 and bottom <= viewport  # the whole headline on the first screen
    pixels = np.asarray(Image.open(tmp_path / "first.png").convert("L"))
    assert pixels.shape == (900, 1280) and pixels.std() > 10  # a rendered page, not a blank one


def test_report_figures_axes_and_labels(two_models, tmp_path):
    """Integer radius ticks, axes from 0, model names (not paths) in legends, a caption that reads,
    and the published tables marked as not comparable."""
    from shiftattack.report import collect
    from shiftattack.report.collect import short_spec
    from shiftattack.report.plots import consistency_bars, diagonal_curve, worst_case_vs_radius
    from shiftattack.report.render import published_note

    import matplotlib.pyplot as plt

    entries = collect([two_models / d for d in ("attack", "certify", "stability")])
    captured = []
    original = plt.close
    plt.close = lambda fig=None: captured.append(fig)  # keep the figures to read their axes
    try:
        worst_case_vs_radius(entries)
        consistency_bars(entries)
        diag = diagonal_curve(entries)
    finally:
        plt.close = original
    (wc,), (cons,), diag_fig = captured[0].axes, captured[1].axes, captured[2]
    assert all(float(t).is_integer() for t in wc.get_xticks())
    assert wc.get_ylim()[0] == 0 and cons.get_ylim()[0] == 0
    assert all(ax.get_ylim()[0] == 0 for ax in diag_fig.axes)
    assert [t.get_text() for t in wc.get_legend().get_texts()] == ["cifar_convnet(width=8)",
                                                                   "cifar_convnet_blur3(width=8)"]
    assert "(;" not in diag.caption and "canvas, up to" in diag.caption
    assert short_spec("/home/me/nets/net.py:make") == "net.py:make"
    assert "Not comparable" in published_note(entries) and "synthetic:test" in published_note(entries)
    md = (lambda out: (main(["report", str(two_models), "--out", str(out)]), (out / "report.md").read_text())[1])(
        tmp_path / "r")
    assert md.index("## Published figures, for reference") < md.index("## Published: spatial attacks")
