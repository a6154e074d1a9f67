"""``shiftattack compare``: three registry models with local weights; every value checked against an
independent computation (plain forward passes and brute-force shift loops), the three files, a
kill -9 then --resume giving the same bytes, protocols never merged, the page in a real browser."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from _browser import dump_dom
from _brute import brute_grid

from shiftattack.cli import main
from shiftattack.data import load_dataset
from shiftattack.models import load_model

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = "synthetic:test"
LIMIT = 24
MODELS = ("small_cnn", "cifar_convnet", "cifar_convnet_blur3")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three registry models, each trained one epoch on 400 synthetic images and saved."""
    from shiftattack.models import create_model
    from shiftattack.models.train import train_classifier

    data = load_dataset("synthetic:train", limit=400)
    folder = tmp_path_factory.mktemp("models")
    paths = []
    for i, name in enumerate(MODELS):
        torch.manual_seed(i)
        model = create_model(name, num_classes=8)
        train_classifier(model, data.images, data.labels, epochs=1, batch_size=50, progress=False, seed=i)
        path = folder / f"{name}.pt"
        torch.save(model.state_dict(), path)
        paths.append(path)
    return [f"{name}@{path}" for name, path in zip(MODELS, paths, strict=True)]


def _args(trained, out, *extra):
    args = [
        "compare",
        "--data",
        DATA,
        "--limit",
        str(LIMIT),
        "--radius",
        "1",
        "--consistency-repeats",
        "2",
        "--certify",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    for model in trained:
        args += ["--model", model]
    return args


@pytest.fixture(scope="module")
def board(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("board") / "lb"
    assert main(_args(trained, out)) == 0
    return out


def test_writes_the_three_files_with_the_protocol(board):
    doc = json.loads((board / "leaderboard.json").read_text())
    assert {p.name for p in board.iterdir()} >= {"leaderboard.csv", "leaderboard.json", "leaderboard.html"}
    assert doc["protocol"]["shifts"] == "grid:1" and len(doc["protocol_sha256"]) == 64
    assert doc["data"]["n_images"] == LIMIT and doc["data"]["fingerprint"]
    assert set(doc["threats"]) == {"circular", "crop"} and len(doc["threats_sha256"]) == 64
    assert [r["rank"] for r in doc["models"]] == [1, 2, 3]
    lines = (board / "leaderboard.csv").read_text().splitlines()
    assert lines[0].startswith("rank,name,spec,weights_sha256,clean_accuracy,")
    assert [line.split(",")[1] for line in lines[1:]] == [r["name"] for r in doc["models"]]
    for row in doc["models"]:
        assert len(row["weights_sha256"]) == 64
        for m, s in row["metrics"].items():
            assert s["low"] <= s["estimate"] <= s["high"], m
            assert 0.0 <= s["low"] and s["high"] <= 100.0, m


def test_values_equal_plain_forward_passes_and_brute_force_shifts(board, trained):
    doc = json.loads((board / "leaderboard.json").read_text())
    data = load_dataset(DATA, limit=LIMIT)
    x, y = data.float_images(), data.labels
    canvas = torch.nn.functional.pad(x, (1, 1, 1, 1))  # zero canvas, pad = K
    for row in doc["models"]:
        spec, weights = row["spec"], row["weights"]
        model = load_model(spec, weights).eval()
        with torch.no_grad():
            clean = (model(x).argmax(1) == y).double().mean().item()
        circular = brute_grid(model, x, y, 1, "circular")
        crop = brute_grid(model, canvas, y, 1, "crop", crop_size=(32, 32))
        m = row["metrics"]
        assert m["clean_accuracy"]["estimate"] == pytest.approx(100 * clean)
        assert m["worst_case_circular"]["estimate"] == pytest.approx(100 * np.mean(circular["robust"]))
        assert m["worst_case_crop"]["estimate"] == pytest.approx(100 * np.mean(crop["robust"]))
        assert m["certified_accuracy"]["estimate"] == pytest.approx(100 * np.mean(circular["robust"]))
        curve = row["curves"]["circular"]
        assert [p["radius"] for p in curve] == [0, 1]
        assert curve[0]["accuracy"] == pytest.approx(100 * clean)
        assert curve[1]["accuracy"] == pytest.approx(m["worst_case_circular"]["estimate"])
        # flip rate: adjacent crops (distance 1, three directions) of the zero canvas, by hand
        flips = []
        for i in range(LIMIT):

            def top1(dx, dy, i=i, model=model):
                c = canvas[i : i + 1, :, 1 - dy : 1 - dy + 32, 1 - dx : 1 - dx + 32]
                with torch.no_grad():
                    return int(model(c).argmax())

            flips.append(np.mean([top1(0, 0) != top1(*u) for u in ((1, 0), (0, 1), (1, 1))]))
        assert m["flip_rate"]["estimate"] == pytest.approx(100 * np.mean(flips))
    ranked = [r["metrics"]["worst_case_circular"]["estimate"] for r in doc["models"]]
    assert ranked == sorted(ranked, reverse=True)


def test_kill_9_then_resume_writes_the_same_bytes(board, trained, tmp_path):
    out = tmp_path / "lb"
    cmd = [sys.executable, "-m", "shiftattack", *_args(trained, out)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "units").glob("*--*.json"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = len(list((out / "units").glob("*--*.json")))
    assert 3 <= stored < 15 and not (out / "leaderboard.json").exists()
    done = subprocess.run(
        [sys.executable, "-m", "shiftattack", *_args(trained, out, "--resume")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for name in ("leaderboard.csv", "leaderboard.json", "leaderboard.html"):
        assert (out / name).read_bytes() == (board / name).read_bytes(), name


def test_another_protocol_is_never_merged_but_more_models_are(board, trained, tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(_args(trained[:2], out)) == 0
    assert main(_args(trained[:2], out, "--resume", "--consistency-repeats", "3")) == 2
    assert "different" in capsys.readouterr().err
    assert main(_args(trained, out, "--resume")) == 0  # the third model's units added, the others kept
    assert (out / "leaderboard.json").read_bytes() == (board / "leaderboard.json").read_bytes()


def test_sort_by_a_lower_is_better_metric_ranks_ascending(trained, tmp_path):
    out = tmp_path / "lb"
    assert main(_args(trained, out, "--sort-by", "flip_rate")) == 0
    doc = json.loads((out / "leaderboard.json").read_text())
    rates = [r["metrics"]["flip_rate"]["estimate"] for r in doc["models"]]
    assert rates == sorted(rates)
    assert all("leader" in r["versus_leader"]["verdict"] for r in doc["models"])


def test_bad_input_is_a_clear_error_and_leaves_nothing(trained, tmp_path, capsys):
    out = tmp_path / "lb"
    assert main(["compare", "--data", DATA, "--out", str(out)]) == 2
    assert "at least one --model" in capsys.readouterr().err
    assert main(_args(trained, out, "--flip-distance", "2")) == 2
    assert "flip-distance" in capsys.readouterr().err
    assert main(_args([*trained, "small_cnn@missing.pt"], out)) == 2
    assert "missing.pt" in capsys.readouterr().err
    bad = tmp_path / "models.csv"
    bad.write_text("spec,colour\nsmall_cnn,red\n")
    assert main(["compare", "--models", str(bad), "--data", DATA, "--out", str(out)]) == 2
    assert "unknown columns ['colour']" in capsys.readouterr().err
    assert not out.exists()


def test_models_file_gives_the_same_leaderboard(board, trained, tmp_path):
    rows = ["name,spec,weights"] + [
        f"{r.split('@')[0]}@{os.path.basename(r.split('@')[1]).removesuffix('.pt')},"
        f"{r.split('@')[0]},{r.split('@')[1]}"
        for r in trained
    ]
    (tmp_path / "models.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "lb"
    args = [a for a in _args([], out)] + ["--models", str(tmp_path / "models.csv")]
    assert main(args) == 0
    assert (out / "leaderboard.json").read_bytes() == (board / "leaderboard.json").read_bytes()


def test_page_renders_in_headless_chromium_with_its_figure(board):
    dom = dump_dom(board / "leaderboard.html")
    assert "Shift-robustness leaderboard" in dom
    assert 'data-figures-rendered="1"' in dom


def test_corruption_suite_adds_the_mean_corruption_error(trained, tmp_path):
    out = tmp_path / "lb"
    assert (
        main(
            _args(
                trained[:1],
                out,
                "--corruptions",
                "cifar10-c",
                "--severities",
                "1,3",
                "--corruption-limit",
                "8",
            )
        )
        == 0
    )
    doc = json.loads((out / "leaderboard.json").read_text())
    unit = json.loads(next((out / "units").glob("*--corruption_error.json")).read_text())
    assert len(unit["by_corruption"]) == 15 and len(unit["per_image"]) == 8
    score = doc["models"][0]["metrics"]["corruption_error"]["estimate"]
    assert score == pytest.approx(np.mean(list(unit["by_corruption"].values())))
    # the first corruption at severity 1, by hand: the same seeded draw, one plain forward pass
    from shiftattack.corruptions import corrupt
    from shiftattack.runtime.units import unit_seed

    data = load_dataset(DATA, limit=LIMIT)
    model = load_model("small_cnn", trained[0].split("@")[1]).eval()
    g = torch.Generator().manual_seed(unit_seed(0, "corruption", "gaussian_noise", 1, 0))
    x = corrupt(data.float_images()[:8], "gaussian_noise", 1, generator=g, params="cifar10")
    with torch.no_grad():
        wrong1 = (model(x).argmax(1) != data.labels[:8]).double().mean().item()
    g = torch.Generator().manual_seed(unit_seed(0, "corruption", "gaussian_noise", 3, 0))
    x = corrupt(data.float_images()[:8], "gaussian_noise", 3, generator=g, params="cifar10")
    with torch.no_grad():
        wrong3 = (model(x).argmax(1) != data.labels[:8]).double().mean().item()
    assert unit["by_corruption"]["gaussian_noise"] == pytest.approx(100 * (wrong1 + wrong3) / 2)
