"""experiments/cifar10_antialias.py --quick end to end, and docs/results.md rendered from what it wrote."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_exp_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(cifar_zip, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "c10aa"
    assert _script("cifar10_antialias").main(["--quick", "--data", str(cifar_zip), "--out", str(out)]) == 0
    return out


def test_quick_experiment_summary_equals_the_documents(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    names = [r["name"] for r in summary["models"]]
    assert names == ["baseline", "rect2"]
    for row in summary["models"]:
        train = json.loads((quick_run / "models" / row["name"] / "train_log.json").read_text())
        assert row["clean_accuracy"] == pytest.approx(100 * train["test_accuracy"])
        for mode in ("zero", "circular", "crop"):
            atk = json.loads((quick_run / "attack" / f"{row['name']}_{mode}" / "results.json").read_text())
            assert row[f"worst_case_{mode}"] == pytest.approx(
                [100 * p["worst_case_accuracy"] for p in atk["accuracy_vs_radius"]]
            )
        stab = json.loads((quick_run / "stability" / row["name"] / "stability.json").read_text())
        assert row["mean_flip_rate"] == stab["flip_rate"]["mean_flip_rate"]
        cert = json.loads((quick_run / "certify" / row["name"] / "certificate.json").read_text())
        assert row["certified_accuracy"] == pytest.approx(100 * cert["certified_accuracy"])
    base = summary["models"][0]
    cost = json.loads((quick_run / "cost.json").read_text())["models"]
    assert base["time_vs_baseline"] == pytest.approx(1.0) and set(cost) == {"baseline", "rect2"}
    assert summary["models"][1]["images_per_s"] == cost["rect2"]["images_per_s"] > 0
    assert base.get("mean_flip_rate_normalised", 100.0) == pytest.approx(100.0)  # absent when it flips 0 %
    exp = json.loads((quick_run / "experiment.json").read_text())
    assert "--quick" in exp["command"] and exp["versions"]["torch"]
    assert (quick_run / "report.html").is_file() and (
        quick_run / "figures" / "flip_rate_vs_distance.png"
    ).is_file()


def test_resume_skips_finished_steps(quick_run, cifar_zip, capsys):
    _script("cifar10_antialias").main(
        ["--quick", "--data", str(cifar_zip), "--out", str(quick_run), "--resume"]
    )
    out = capsys.readouterr().out
    assert "[run ]" not in out and out.count("[skip]") >= 10


def test_results_page_judges_each_claim_from_the_summary(quick_run, tmp_path):
    page = tmp_path / "results.md"
    absent = tmp_path / "not_run"
    assert (
        _script("render_results").main(
            [str(quick_run), "--out", str(page), "--stride", str(absent), "--one-pixel", str(absent)]
        )
        == 0
    )
    text = page.read_text()
    summary = json.loads((quick_run / "summary.json").read_text())
    assert f"{summary['models'][0]['clean_accuracy']:.2f} %" in text
    for claim in ("### 1.", "### 2.", "### 3.", "### 4.", "### 5."):
        assert claim in text
    assert text.count("**reproduced**") + text.count("**not reproduced**") >= 4
    assert "**not tested**" in text  # claim 4 without its experiment's results says so


def test_unknown_models_and_missing_data_are_refused(tmp_path, capsys):
    exp = _script("cifar10_antialias")
    with pytest.raises(SystemExit):
        exp.main(["--quick", "--data", str(tmp_path / "none.zip"), "--out", str(tmp_path / "o")])
    assert "CIFAR-10 not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        exp.main(["--quick", "--data", str(tmp_path), "--models", "resnet", "--out", str(tmp_path / "o")])
    assert "unknown --models resnet" in capsys.readouterr().err


def test_local_homogeneity_separates_noise_from_smooth_images():
    import torch

    h = _script("stride_homogeneity").local_homogeneity
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(8, 3, 32, 32, generator=g)
    ramp = torch.linspace(0, 1, 32).expand(8, 3, 32, 32).contiguous()
    assert abs(h(noise)) < 0.05  # neighbours of white noise differ as much as random pixels
    assert h(ramp) > 0.9
    assert h(torch.full((2, 3, 8, 8), 0.5)) == 1.0


def test_stride_homogeneity_quick_writes_rows_and_the_figure(cifar_zip, tmp_path):
    out = tmp_path / "sh"
    assert (
        _script("stride_homogeneity").main(
            [
                "--quick",
                "--data",
                str(cifar_zip),
                "--out",
                str(out),
                "--kernels",
                "1,3",
                "--datasets",
                "synthetic,cifar10_blur1",
            ]
        )
        == 0
    )
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [(r["dataset"], r["pool_kernel"]) for r in rows] == [
        ("synthetic", 1),
        ("synthetic", 3),
        ("cifar10_blur1", 1),
        ("cifar10_blur1", 3),
    ]
    assert (
        rows[0]["homogeneity"] < rows[2]["homogeneity"]
    )  # gratings are less homogeneous than blurred photos
    assert (out / "stride_homogeneity.png").stat().st_size > 5000


def test_one_pixel_quick_measures_every_model_of_the_source_run(quick_run, cifar_zip, tmp_path):
    out = tmp_path / "op"
    assert (
        _script("one_pixel").main(
            ["--from", str(quick_run), "--data", str(cifar_zip), "--out", str(out), "--images", "16"]
        )
        == 0
    )
    doc = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in doc["models"]] == ["baseline", "baseline_noaug", "rect2"]
    for r in doc["models"]:
        for protocol in ("sliding_crop", "black_canvas"):
            assert r[protocol]["n_pairs"] == 16 * 8 and 0 <= r[protocol]["p_top1_change"] <= 1
    noaug = json.loads((out / "models" / "baseline_noaug" / "train_log.json").read_text())
    assert noaug["config"]["augment_pad"] == 0


def test_imagenet_eval_runs_end_to_end_on_a_tiny_imagenet_folder(tmp_path):
    """Offline: a 4-class ImageFolder of random JPEGs stands in for the validation set."""
    import numpy as np
    import torch
    from PIL import Image

    from shiftattack.models import create_model

    rng = np.random.default_rng(0)
    for c in range(4):
        folder = tmp_path / "val" / f"n0000{c}"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (280, 300, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")
    spec = "cifar_convnet(width=8)"
    torch.save(create_model(spec, num_classes=4).state_dict(), tmp_path / "w.pt")
    out = tmp_path / "eval"
    assert (
        _script("imagenet_eval").main(
            [
                "--val",
                str(tmp_path / "val"),
                "--model",
                spec,
                str(tmp_path / "w.pt"),
                "--limit",
                "4",
                "--radius",
                "1",
                "--c-limit",
                "2",
                "--p-limit",
                "1",
                "--corruptions",
                "gaussian_noise",
                "--perturbations",
                "translate",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    name = "cifar_convnet_width_8"
    atk = json.loads((out / "attack" / name / "results.json").read_text())
    assert atk["threat"]["mode"] == "crop" and atk["threat"]["crop_size"] == [224, 224]
    stab = json.loads((out / "stability" / name / "stability.json").read_text())
    assert stab["diagonal"]["offsets"] == list(range(16, -17, -1)) and stab["flip_rate"]["max_distance"] == 8
    assert (out / "imagenet-c" / name / "results.json").is_file()
    assert (out / "imagenet-p" / name / "results.json").is_file()
    assert (out / "report.html").is_file() and (out / "figures" / "diagonal_curve.png").is_file()


def test_every_tier_model_builds_for_cifar_inputs():
    """The GPU tier cannot run here; its eight ResNet-18 variants at least build and map 32-px images."""
    import torch

    from shiftattack.models import create_model

    tiers = _script("cifar10_antialias").MODELS
    assert [n for n, _ in tiers["cpu"]] == [n for n, _ in tiers["gpu"]]
    for tier in ("cpu", "gpu"):
        for _, spec in tiers[tier]:
            with torch.no_grad():
                assert create_model(spec, num_classes=10).eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_black_canvas_centres_the_downscaled_image_on_black():
    import torch
    import torch.nn.functional as F

    images = torch.rand(3, 3, 32, 32)
    canvas = _script("one_pixel").black_canvas(images, 24)
    assert canvas.shape == images.shape
    assert canvas[..., :4, :].abs().max() == 0 and canvas[..., :, 28:].abs().max() == 0
    small = F.interpolate(images, size=(24, 24), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(canvas[..., 4:28, 4:28], small.clamp(0, 1))


def test_committed_results_page_is_rendered_from_the_committed_results(tmp_path, monkeypatch):
    """docs/results.md must be exactly what render_results.py makes of experiments/results/ (no hand edits)."""
    folder = ROOT / "experiments" / "results" / "cifar10_antialias_cpu"
    if not (folder / "summary.json").is_file():
        pytest.skip("no committed cifar10_antialias results")
    monkeypatch.chdir(ROOT)
    page = tmp_path / "results.md"
    assert (
        _script("render_results").main(["experiments/results/cifar10_antialias_cpu", "--out", str(page)]) == 0
    )
    assert page.read_text() == (ROOT / "docs" / "results.md").read_text(), (
        "docs/results.md is stale: run python experiments/render_results.py experiments/results/cifar10_antialias_cpu"
    )
