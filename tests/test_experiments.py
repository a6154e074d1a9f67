"""The reproduction experiment (experiments/cifar10_antialias.py and reproduce/): units end to end at
tiny sizes, resume, commits, the GPU tier's code path on CPU, and docs/results.md against the
committed units."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments" / "reproduce"))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_exp_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def quick_run(cifar_zip, tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    out = root / "experiments" / "results" / "cifar10_quick"
    assert _script("cifar10_antialias").main(["--tier", "quick", "--data", str(cifar_zip), "--out", str(out)]) == 0
    return out


def test_quick_units_hold_every_measurement_and_agree_with_the_jobs(quick_run):
    import design

    expected = [design.unit_id(a.name, n, s) for a, n, _, s in design.units("quick")]
    assert sorted(p.name for p in (quick_run / "units").iterdir()) == sorted(expected)
    sizes = design.SIZES["quick"]
    from summarise import load_unit

    for uid in expected:
        folder = quick_run / "units" / uid
        meta = json.loads((folder / "unit.json").read_text())
        per = _rows(folder / "per_image.csv")
        assert len(per) == sizes.test_limit
        if meta["arm"].startswith("stride"):  # the shift-only arms: no attacks, one-pixel or benchmarks
            assert not (folder / "one_pixel.csv").exists() and not (folder / "attack_zero.csv").exists()
            assert 0 < meta["local_homogeneity"] < 1
            continue
        # clean accuracy from our per-image file equals what the train job measured on the same images
        acc = sum(r["pred"] == r["label"] for r in per) / len(per)
        assert acc == pytest.approx(meta["train"]["test_accuracy"])
        assert all(0 <= int(r["agree_crop"]) <= sizes.repeats and 0 <= int(r["flips"]) <= 3 * sizes.radius
                   for r in per)
        one = _rows(folder / "one_pixel.csv")
        for mode in ("zero", "crop"):
            attack = _rows(folder / f"attack_{mode}.csv")
            assert [r["index"] for r in attack] == [r["index"] for r in one]
            job = json.loads((folder / f"attack_{mode}.json").read_text())
            assert "images" not in job  # the per-image rows live in the CSV only
            unit = load_unit(folder)
            worst = unit.paired[f"worst_{mode}"][0].mean()
            assert worst == pytest.approx(100 * job["worst_case_accuracy"])
        assert meta["weights_sha256"] and meta["commit"] and meta["recipe"]["augment_pad"] in (0, 4)
        assert [layer["module"] for layer in meta["conv_tv"]][0].startswith("stem")
    noaug = json.loads((quick_run / "units" / "noaug-baseline-s0" / "unit.json").read_text())
    assert noaug["recipe"]["augment_pad"] == 0
    up = json.loads((quick_run / "units" / "stride_up-s2k1-s0" / "unit.json").read_text())
    orig = json.loads((quick_run / "units" / "stride-s2k1-s0" / "unit.json").read_text())
    assert up["local_homogeneity"] > orig["local_homogeneity"]  # upsampling raises local homogeneity
    up_rows, orig_rows = (_rows(quick_run / "units" / u / "per_image.csv") for u in ("stride_up-s2k1-s0",
                                                                                       "stride-s2k1-s0"))
    assert [r["index"] for r in up_rows] == [r["index"] for r in orig_rows]  # the same images, paired
    exp = json.loads((quick_run / "experiment.json").read_text())
    assert set(exp["units"]) == set(expected) and exp["starts"][0]["design_sha256"]


def test_a_second_run_resumes_and_a_partial_unit_is_run_again(quick_run, cifar_zip, capsys):
    shutil.rmtree(quick_run / "units" / "main-cmod-s1")
    (quick_run / "units" / ".main-cmod-s1.partial").mkdir()  # what a killed unit leaves
    exp = _script("cifar10_antialias")
    assert exp.main(["--tier", "quick", "--data", str(cifar_zip), "--out", str(quick_run)]) == 0
    out = capsys.readouterr().out
    assert "10 units finished, 1 to run" in out and "[unit] main-cmod-s1" in out
    assert (quick_run / "units" / "main-cmod-s1" / "unit.json").is_file()
    assert exp.main(["--tier", "quick", "--data", str(cifar_zip), "--out", str(quick_run)]) == 0
    assert "11 units finished, 0 to run" in capsys.readouterr().out


def test_the_driver_commits_only_the_unit_and_honours_stop(cifar_zip, tmp_path, capsys, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "other.txt").write_text("staged, not the experiment's\n")
    subprocess.run([*git, "add", "other.txt"], check=True)
    out = repo / "experiments" / "results" / "cifar10_quick"
    out.mkdir(parents=True)
    from driver import run

    for k in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(k, "t@t" if k.endswith("EMAIL") else "t")
    assert run("quick", str(cifar_zip), out, commit_results=True, max_units=1) == 1
    (out / "STOP").touch()
    assert run("quick", str(cifar_zip), out, commit_results=True) == 0
    assert "STOP file found" in capsys.readouterr().out and not (out / "STOP").exists()
    log = subprocess.run([*git, "log", "--format=%s", "--name-only"], capture_output=True, text=True).stdout
    assert "experiment unit main-baseline-s0 (quick tier" in log
    assert "units/main-baseline-s0/per_image.csv" in log and "other.txt" not in log
    staged = subprocess.run([*git, "diff", "--cached", "--name-only"], capture_output=True, text=True).stdout
    assert staged.strip() == "other.txt"  # left staged, untouched


def test_results_page_renders_verdicts_with_intervals_and_rules(quick_run, tmp_path):
    page = tmp_path / "results.md"
    written = _script("render_results").render(quick_run.parents[2], page, quick=quick_run)
    text = page.read_text()
    summary = json.loads((quick_run / "summary.json").read_text())
    assert page in written and quick_run / "summary.json" in written
    assert "Units finished: **11 of 11**" in text
    tests = [t for t in summary["tests"] if t["verdict"] != "not run yet"]
    assert tests, "the quick tier's models answer some tests"
    for t in tests:
        assert t["verdict"] in ("reproduced", "contradicted", "inconclusive")
        assert t["rule"] in text and t["interval"]["low"] <= t["interval"]["estimate"] <= t["interval"]["high"]
        row = next(line for line in text.splitlines() if line.startswith(f"| {t['name']} |"))
        assert ("provisional" in row) == (t["interval"]["method"] == "images")  # one seed: said so
    base = summary["arms"]["main"]["baseline"]["metrics"]["clean"]
    assert f"{base['mean']:.2f} ± {base['sd']:.2f} [{base['interval']['low']:.2f}" in text
    for claim in ("### 1.", "### 2.", "### 3.", "### 4.", "### 5."):
        assert claim in text


def test_gpu_tier_code_path_runs_on_cpu_at_tiny_sizes(cifar_zip, tmp_path):
    """The GPU tier (the CMod paper's ResNet-18 table) cannot run here; its code path runs at tiny sizes."""
    out = tmp_path / "gs"
    exp = _script("cifar10_antialias")
    assert exp.main(["--tier", "gpu_smoke", "--data", str(cifar_zip), "--out", str(out), "--device", "cpu"]) == 0
    import design

    for arm, name, spec, seed in design.units("gpu_smoke"):
        meta = json.loads((out / "units" / design.unit_id(arm.name, name, seed) / "unit.json").read_text())
        assert meta["model"] == spec and spec.startswith("resnet18")
    from summarise import summarise

    assert set(summarise(out, "gpu_smoke")["arms"]["main"]) == {"baseline", "tri3_cmod"}


def test_every_tier_model_builds_for_cifar_inputs():
    """Every model of every tier (the GPU tier's ResNet-18 variants included) maps 32-px images."""
    import design
    import torch

    from shiftattack.models import create_model

    for arms in design.ARMS.values():
        for arm in arms:
            for spec in arm.models.values():
                with torch.no_grad():
                    logits = create_model(spec, num_classes=10).eval()(torch.rand(2, 3, 32, 32))
                    assert logits.shape == (2, 10), spec


def test_black_canvas_centres_the_downscaled_image_on_black():
    import torch
    import torch.nn.functional as F
    from unit import black_canvas

    images = torch.rand(3, 3, 32, 32)
    canvas = black_canvas(images, 24)
    assert canvas.shape == images.shape
    assert canvas[..., :4, :].abs().max() == 0 and canvas[..., :, 28:].abs().max() == 0
    small = F.interpolate(images, size=(24, 24), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(canvas[..., 4:28, 4:28], small.clamp(0, 1))


def test_missing_data_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script("cifar10_antialias").main(["--tier", "quick", "--data", str(tmp_path / "none.zip")])
    assert "CIFAR-10 not found" in capsys.readouterr().err


def test_committed_results_page_is_rendered_from_the_committed_units(tmp_path):
    """docs/results.md and each summary.json must be exactly what render_results.py makes of the
    committed units (no hand edits, nothing stale)."""
    if not (ROOT / "experiments" / "results" / "cifar10_cpu" / "units").is_dir():
        pytest.skip("no committed experiment units")
    copy = tmp_path / "repo"
    for sub in ("experiments/results", "docs"):
        shutil.copytree(ROOT / sub, copy / sub, ignore=shutil.ignore_patterns("weights", "generated", ".*"))
    _script("render_results").render(copy, copy / "docs" / "results.md")
    assert (copy / "docs" / "results.md").read_text() == (ROOT / "docs" / "results.md").read_text(), (
        "docs/results.md is stale: run python experiments/render_results.py")
    for summary in (copy / "experiments" / "results").glob("cifar10_*/summary.json"):
        committed = ROOT / summary.relative_to(copy)
        assert summary.read_text() == committed.read_text(), f"{committed} is stale: run render_results.py"


def test_quick_results_never_mix_with_the_committed_ones(quick_run, tmp_path, capsys):
    """A quick-tier folder beside the committed tiers is left out of docs/results.md (and named);
    --quick renders it alone, and never into docs/results.md."""
    root = quick_run.parents[2]
    render = _script("render_results")
    page = root / "docs" / "results.md"
    page.parent.mkdir(exist_ok=True)
    written = render.render(root, page)
    text = page.read_text()
    assert "quick tier" not in text and "No experiment units are committed yet." in text
    assert quick_run / "summary.json" not in written
    assert f"left out {quick_run} (quick tier" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="never go into docs/results.md"):
        render.render(root, page, quick=quick_run)
    assert page.read_text() == text
    assert render.main(["--root", str(root), "--quick", str(quick_run)]) == 0
    alone = (quick_run / "results.md").read_text()
    assert alone.startswith(f"# Quick results of {quick_run} (a smoke test") and "## CIFAR-10, quick tier" in alone


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
