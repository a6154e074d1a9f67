"""``shiftattack benchmark`` and ``shiftattack corrupt`` end to end on tiny data.

Scores are checked against a brute-force recomputation from the public functions
(corrupt / perturb, the published truncation, the metric definitions), files written
by ``corrupt`` are read back by ``benchmark --source`` with the same result, and
``--resume`` recomputes only missing units.
"""

from __future__ import annotations

import csv
import json
import textwrap

import numpy as np
import pytest
import torch

from shiftattack.cli import main
from shiftattack.corruptions import corrupt
from shiftattack.corruptions.perturbations import perturb
from shiftattack.jobs.benchmark.generate import chunk_size, unit_seed
from shiftattack.metrics.corruption import flip_probability, unnormalized_t5d

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def factory():
        torch.manual_seed(3)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                             nn.Linear(8 * 16, 5))
    """
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def setup(tmp_path):
    rng = np.random.default_rng(1)
    coarse = torch.from_numpy(rng.random((30, 3, 6, 6)))
    x = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    (tmp_path / "model.py").write_text(MODEL_FILE)
    ns: dict = {}
    exec(MODEL_FILE, ns)
    net = ns["factory"]().eval()
    with torch.no_grad():
        y = net(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
    y[::4] = (y[::4] + 1) % 5
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return {
        "model": f"{tmp_path / 'model.py'}:factory",
        "data": str(tmp_path / "data.npz"),
        "x": x,
        "y": y,
        "net": net,
        "tmp": tmp_path,
    }


def _run(*args: str) -> int:
    return main([str(a) for a in args])


def _brute_c_error(s, name, severity, seed=0):
    """Top-1 error on the unit's images, regenerated chunk by chunk as documented."""
    x = torch.from_numpy(s["x"]).permute(0, 3, 1, 2)
    gen = torch.Generator().manual_seed(unit_seed(seed, "cifar10", name, severity))
    step = chunk_size(32, 32)
    wrong = 0
    for start in range(0, len(x), step):
        c = corrupt(x[start : start + step].float() / 255, name, severity, generator=gen, params="cifar10")
        q = (c.clamp(0, 1) * 255).floor().to(torch.uint8)
        with torch.no_grad():
            pred = s["net"](q.float() / 255).argmax(1).numpy()
        wrong += int((pred != s["y"][start : start + step]).sum())
    return wrong / len(x)


def test_cifar10_c_scores_match_brute_force(setup, capsys):
    out = setup["tmp"] / "c"
    assert (
        _run(
            "benchmark",
            "--suite",
            "cifar10-c",
            "--model",
            setup["model"],
            "--data",
            setup["data"],
            "--corruptions",
            "gaussian_noise,contrast",
            "--out",
            out,
        )
        == 0
    )
    doc = json.loads((out / "results.json").read_text())
    clean = (
        setup["y"]
        != setup["net"](torch.from_numpy(setup["x"]).permute(0, 3, 1, 2).float() / 255)
        .argmax(1)
        .detach()
        .numpy()
    ).mean()
    assert doc["clean_error"] == pytest.approx(clean)
    for name in ("gaussian_noise", "contrast"):
        errs = [_brute_c_error(setup, name, s) for s in range(1, 6)]
        assert doc["corruptions"][name]["errors"] == pytest.approx(errs)
        assert doc["corruptions"][name]["ce"] == pytest.approx(np.mean(errs))  # unnormalised by default
        assert doc["corruptions"][name]["relative_ce"] == pytest.approx(np.mean(errs) - clean)
    assert doc["normalizer"]["name"] == "none" and doc["mce"] is None and len(doc["mce_missing"]) == 13
    rows = list(csv.reader((out / "results.csv").open()))
    assert rows[0][:3] == ["corruption", "severity", "error"] and len(rows) == 1 + 1 + 10
    printed = capsys.readouterr().out
    assert "gaussian_noise" in printed and "normaliser: none" in printed


def test_corrupt_files_score_like_generated(setup):
    gen_out, files, read_out = setup["tmp"] / "gen", setup["tmp"] / "files", setup["tmp"] / "read"
    common = ["--corruptions", "impulse_noise,pixelate"]
    assert (
        _run("corrupt", "--suite", "cifar10-c", "--data", setup["data"], "--out", files, *common, "--quiet")
        == 0
    )
    arr = np.load(files / "impulse_noise.npy")
    assert arr.dtype == np.uint8 and arr.shape == (150, 32, 32, 3)
    assert np.array_equal(np.load(files / "labels.npy"), np.tile(setup["y"], 5).astype(np.uint8))
    assert (
        _run(
            "benchmark",
            "--suite",
            "cifar10-c",
            "--model",
            setup["model"],
            "--data",
            setup["data"],
            "--out",
            gen_out,
            *common,
            "--quiet",
        )
        == 0
    )
    assert (
        _run(
            "benchmark",
            "--suite",
            "cifar10-c",
            "--model",
            setup["model"],
            "--source",
            files,
            "--out",
            read_out,
            *common,
            "--quiet",
        )
        == 0
    )
    a, b = (json.loads((d / "results.json").read_text()) for d in (gen_out, read_out))
    for name in ("impulse_noise", "pixelate"):
        assert a["corruptions"][name]["errors"] == b["corruptions"][name]["errors"]
    assert b["clean_error"] is None  # no --data: no clean pass, no relative CE


def test_resume_recomputes_only_missing_units(setup):
    out = setup["tmp"] / "r"
    argv = [
        "benchmark",
        "--suite",
        "cifar10-c",
        "--model",
        setup["model"],
        "--data",
        setup["data"],
        "--corruptions",
        "shot_noise,brightness",
        "--out",
        out,
        "--quiet",
    ]
    assert _run(*argv) == 0
    before = (out / "results.json").read_bytes()
    units = sorted((out / "units").glob("*__s*.json"))
    assert len(units) == 10
    stamps = {u.name: u.stat().st_mtime_ns for u in units}
    units[3].unlink()
    (out / "results.json").unlink()
    assert _run(*argv, "--resume") == 0
    assert (out / "results.json").read_bytes() == before
    changed = [
        u.name for u in sorted((out / "units").glob("*__s*.json")) if stamps[u.name] != u.stat().st_mtime_ns
    ]
    assert changed == [units[3].name]


def test_resume_refuses_a_different_run(setup, capsys):
    out = setup["tmp"] / "r2"
    base = [
        "benchmark",
        "--suite",
        "cifar10-c",
        "--model",
        setup["model"],
        "--data",
        setup["data"],
        "--corruptions",
        "contrast",
        "--out",
        out,
        "--quiet",
    ]
    assert _run(*base) == 0
    assert _run(*base, "--resume", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "different run" in err and "seed" in err


def test_cifar10_p_flip_metrics_match_brute_force(setup):
    out = setup["tmp"] / "p"
    assert (
        _run(
            "benchmark",
            "--suite",
            "cifar10-p",
            "--model",
            setup["model"],
            "--data",
            setup["data"],
            "--corruptions",
            "translate,gaussian_noise",
            "--out",
            out,
            "--quiet",
        )
        == 0
    )
    doc = json.loads((out / "results.json").read_text())
    x = torch.from_numpy(setup["x"]).permute(0, 3, 1, 2).float() / 255
    for name, noise in (("translate", False), ("gaussian_noise", True)):
        gen = torch.Generator().manual_seed(unit_seed(0, "cifar10", name, 1))
        seq = perturb(x, name, generator=gen, params="cifar10")  # 30 images: one chunk
        q = (seq.clamp(0, 1) * 255).floor() / 255
        with torch.no_grad():
            logits = setup["net"](q.flatten(0, 1)).view(*q.shape[:2], -1)
        r = doc["perturbations"][name]
        assert r["fp"] == pytest.approx(flip_probability(logits.argmax(-1), noise=noise))
        assert r["ut5d"] == pytest.approx(unnormalized_t5d(logits, noise=noise))
        assert r["frames"] == (16 if name == "translate" else 31)
    # a run normalised by itself has FR = T5D = 1 for every perturbation
    out2 = setup["tmp"] / "p2"
    assert (
        _run(
            "benchmark",
            "--suite",
            "cifar10-p",
            "--model",
            setup["model"],
            "--data",
            setup["data"],
            "--corruptions",
            "translate,gaussian_noise",
            "--normalizer",
            out / "results.json",
            "--out",
            out2,
            "--quiet",
        )
        == 0
    )
    doc2 = json.loads((out2 / "results.json").read_text())
    for r in doc2["perturbations"].values():
        if r["fp"] > 0:
            assert r["fr"] == pytest.approx(1.0)


def test_cifar10_p_files_round_trip(setup):
    files, a_out, b_out = setup["tmp"] / "pf", setup["tmp"] / "pa", setup["tmp"] / "pb"
    sel = ["--corruptions", "rotate"]
    assert (
        _run("corrupt", "--suite", "cifar10-p", "--data", setup["data"], "--out", files, *sel, "--quiet") == 0
    )
    arr = np.load(files / "rotate.npy")
    assert arr.shape == (30, 31, 32, 32, 3) and arr.dtype == np.uint8
    assert (
        _run(
            "benchmark",
            "--suite",
            "cifar10-p",
            "--model",
            setup["model"],
            "--data",
            setup["data"],
            "--out",
            a_out,
            *sel,
            "--quiet",
        )
        == 0
    )
    assert (
        _run(
            "benchmark",
            "--suite",
            "cifar10-p",
            "--model",
            setup["model"],
            "--source",
            files,
            "--out",
            b_out,
            *sel,
            "--quiet",
        )
        == 0
    )
    a, b = (json.loads((d / "results.json").read_text())["perturbations"]["rotate"] for d in (a_out, b_out))
    assert a["fp"] == b["fp"] and a["ut5d"] == b["ut5d"]


def test_imagenet_c_generated_crops_224_and_writes_jpeg_folders(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((3, 256, 256, 3)) * 255).astype(np.uint8)
    np.savez(tmp_path / "big.npz", x=x, y=np.array([0, 1, 0]))
    (tmp_path / "model.py").write_text(MODEL_FILE)
    model = f"{tmp_path / 'model.py'}:factory"
    out = tmp_path / "b"
    assert (
        _run(
            "benchmark",
            "--suite",
            "imagenet-c",
            "--model",
            model,
            "--data",
            tmp_path / "big.npz",
            "--corruptions",
            "contrast",
            "--severities",
            "1,5",
            "--out",
            out,
            "--quiet",
        )
        == 0
    )
    doc = json.loads((out / "results.json").read_text())
    assert doc["normalizer"]["name"].startswith("AlexNet") and doc["corruptions"]["contrast"]["ce"] is None
    files = tmp_path / "f"
    assert (
        _run(
            "corrupt",
            "--suite",
            "imagenet-c",
            "--data",
            tmp_path / "big.npz",
            "--corruptions",
            "contrast",
            "--severities",
            "2",
            "--out",
            files,
            "--quiet",
        )
        == 0
    )
    written = sorted(p.relative_to(files).as_posix() for p in files.rglob("*.JPEG"))
    assert written == [
        "contrast/2/0/00000000.JPEG",
        "contrast/2/0/00000002.JPEG",
        "contrast/2/1/00000001.JPEG",
    ]
    from PIL import Image

    assert Image.open(files / written[0]).size == (224, 224)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "cifar10-c", "--corruptions", "nope"], "no corruption matches nope"),
        (["--suite", "cifar10-p", "--corruptions", "gaussian_blurr"], "no perturbation matches"),
        (["--suite", "cifar10-c", "--severities", "0,6"], "severities must be among 1..5"),
        (["--suite", "cifar10-c", "--normalizer", "missing.json"], "missing.json"),
    ],
)
def test_bad_input_exits_2_without_output(setup, capsys, args, message):
    out = setup["tmp"] / "bad"
    assert _run("benchmark", "--model", setup["model"], "--data", setup["data"], *args, "--out", out) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_generated_source_needs_data(setup, capsys):
    assert (
        _run("benchmark", "--suite", "cifar10-c", "--model", setup["model"], "--out", setup["tmp"] / "x") == 2
    )
    assert "give --data" in capsys.readouterr().err


def test_imagenet_p_videos_round_trip(tmp_path):
    pytest.importorskip("av")
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((2, 3, 8, 8)))
    x = torch.nn.functional.interpolate(coarse, size=256, mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    np.savez(tmp_path / "big.npz", x=x, y=np.array([0, 1]))
    (tmp_path / "model.py").write_text(MODEL_FILE)
    model, data = f"{tmp_path / 'model.py'}:factory", tmp_path / "big.npz"
    sel = ["--corruptions", "translate"]
    assert (
        _run("corrupt", "--suite", "imagenet-p", "--data", data, "--out", tmp_path / "P", *sel, "--quiet")
        == 0
    )
    videos = sorted(p.relative_to(tmp_path / "P").as_posix() for p in (tmp_path / "P").rglob("*.mp4"))
    assert videos == ["translate/0/00000000.mp4", "translate/1/00000001.mp4"]
    from shiftattack.data.video import read_video

    frames = read_video(tmp_path / "P" / videos[0])
    assert frames.shape == (41, 3, 224, 224) and frames.dtype == torch.uint8
    for src, out in ((None, "gen"), (tmp_path / "P", "read")):
        source = ["--data", data] if src is None else ["--source", src]
        assert (
            _run(
                "benchmark",
                "--suite",
                "imagenet-p",
                "--model",
                model,
                *source,
                *sel,
                "--out",
                tmp_path / out,
                "--quiet",
            )
            == 0
        )
    gen, read = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("gen", "read"))
    assert gen["normalizer"]["name"].startswith("AlexNet")
    for doc in (gen, read):
        r = doc["perturbations"]["translate"]
        assert r["n_sequences"] == 2 and r["frames"] == 41 and r["pairs"] == 80
        assert r["fr"] == pytest.approx(r["fp"] / 0.1101)  # AlexNet's published translate FP
