"""The ``shiftattack attack`` command end to end on a tiny generated dataset, and its errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from _brute import brute_grid

from shiftattack.cli import main

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def factory():
        torch.manual_seed(2)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(6 * 6 * 6, 4))

    def wrong_shape():
        return nn.Conv2d(3, 4, 3)

    def nan_logits():
        class M(nn.Module):
            def forward(self, x):
                return torch.full((x.shape[0], 4), float("nan"))
        return M()

    def raises():
        class M(nn.Module):
            def forward(self, x):
                raise RuntimeError("boom")
        return M()

    def two_classes():
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 2))
    """
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((24, 3, 4, 4)))
    smooth = torch.nn.functional.interpolate(coarse, size=12, mode="bilinear", align_corners=False)
    x = (smooth.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    model_path = tmp_path / "model.py"
    model_path.write_text(MODEL_FILE)
    ns: dict = {}
    exec(MODEL_FILE, ns)
    net = ns["factory"]().eval()
    with torch.no_grad():
        y = net(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
    y[::5] = (y[::5] + 1) % 4  # some clean mistakes
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return {"model": model_path, "data": tmp_path / "data.npz", "x": x, "y": y, "net": net, "tmp": tmp_path}


def _run(*args: str) -> int:
    return main(list(args))


@pytest.mark.parametrize("mode", ["zero", "circular", "reflect"])
def test_attack_writes_contract_and_matches_brute_force(files, mode):
    out = files["tmp"] / f"out-{mode}"
    assert _run("attack", "--model", f"{files['model']}:factory", "--data", str(files["data"]),
                "--shifts", "grid:2", "--mode", mode, "--out", str(out), "--device", "cpu", "--quiet") == 0
    doc = json.loads((out / "results.json").read_text())
    for key in ("clean_accuracy", "worst_case_accuracy", "n_images", "threat", "images"):
        assert key in doc
    assert doc["n_images"] == 24 and len(doc["images"]) == 24
    for rec in doc["images"]:
        assert set(rec) >= {"index", "label", "clean_pred", "robust", "worst_shift", "worst_margin",
                            "n_evaluated"}
        assert len(rec["worst_shift"]) == 2 and all(isinstance(v, int) for v in rec["worst_shift"])
    x = torch.from_numpy(files["x"]).permute(0, 3, 1, 2).float() / 255
    ref = brute_grid(files["net"], x, torch.from_numpy(files["y"]).long(), 2, mode)
    assert [r["robust"] for r in doc["images"]] == ref["robust"]
    assert doc["worst_case_accuracy"] == sum(ref["robust"]) / 24
    for rec in doc["images"]:
        if rec["clean_pred"] != rec["label"]:
            assert rec["worst_shift"] == [0, 0] and not rec["robust"]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 24 and rows[0].keys() >= {"index", "robust", "worst_dx", "worst_dy", "worst_margin"}
    assert [int(r["robust"]) for r in rows] == [int(v) for v in ref["robust"]]


def test_limit_and_summary(files, capsys):
    out = files["tmp"] / "out"
    assert _run("attack", "--model", f"{files['model']}:factory", "--data", str(files["data"]),
                "--shifts", "random:2:5", "--mode", "zero", "--limit", "8", "--out", str(out),
                "--device", "cpu") == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["n_images"] == 8 and doc["attack"]["name"] == "random"
    printed = capsys.readouterr().out
    assert "worst-case accuracy" in printed and "clean accuracy" in printed


def test_crop_mode_with_canvas(files):
    out = files["tmp"] / "crop"
    assert _run("attack", "--model", f"{files['model']}:factory", "--data", str(files["data"]),
                "--shifts", "grid:2", "--mode", "crop", "--canvas-pad", "2", "--canvas-pad-mode", "reflect",
                "--out", str(out), "--device", "cpu", "--quiet") == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["threat"]["crop_size"] == [12, 12]


@pytest.mark.parametrize("args, message", [
    (["--data", "missing.npz"], "no such file"),
    (["--shifts", "grid:x"], "invalid grid radius"),
    (["--shifts", "grid:12"], "too large"),
    (["--model", "{model}:wrong_shape"], "logits of shape"),
    (["--model", "{model}:nan_logits"], "NaN"),
    (["--model", "{model}:raises"], "boom"),
    (["--model", "{model}:two_classes"], "classes"),
    (["--model", "{model}:nope"], "defines no"),
    (["--model", "no_such_module:f"], "cannot import"),
    (["--weights", "missing.pt"], "weights file not found"),
    (["--mode", "zero", "--shifts", "grid:1:0.5"], "--interp"),
])
def test_errors_exit_2_without_output(files, capsys, args, message):
    base = {"--model": f"{files['model']}:factory", "--data": str(files["data"]), "--shifts": "grid:1",
            "--mode": "zero"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value.format(model=files["model"])
    out = files["tmp"] / "never"
    argv = ["attack", *[a for kv in base.items() for a in kv], "--out", str(out), "--device", "cpu",
            "--quiet"]
    assert _run(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_existing_output_folder_needs_overwrite(files, capsys):
    out = files["tmp"] / "exists"
    out.mkdir()
    (out / "old.txt").write_text("keep")
    argv = ["attack", "--model", f"{files['model']}:factory", "--data", str(files["data"]), "--shifts",
            "grid:1", "--mode", "zero", "--out", str(out), "--device", "cpu", "--quiet"]
    assert _run(*argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert not (out / "results.json").exists()
    assert _run(*argv, "--overwrite") == 0
    assert (out / "results.json").exists()


def test_bad_argument_values_are_rejected_by_the_parser(files):
    with pytest.raises(SystemExit) as exc:
        _run("attack", "--model", "x", "--data", "y", "--shifts", "grid:1", "--mode", "zero", "--out", "o",
             "--batch-size", "0")
    assert exc.value.code == 2


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "shiftattack", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "attack" in proc.stdout


def test_ctrl_c_says_whether_finished_work_was_kept(monkeypatch, tmp_path, capsys):
    """Exit 130 either way; resumable commands say to --resume, the others that nothing was written."""
    import shiftattack.data
    import shiftattack.jobs.attack
    import shiftattack.jobs.benchmark

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shiftattack.jobs.benchmark, "run_benchmark", interrupt)
    monkeypatch.setattr(shiftattack.jobs.attack, "load_dataset", interrupt)
    monkeypatch.setattr(shiftattack.data, "load_dataset", interrupt)
    assert main(["benchmark", "--suite", "cifar10-c", "--model", "small_cnn", "--data", "synthetic:test",
                 "--out", str(tmp_path / "b")]) == 130
    assert "rerun the same benchmark command with --resume" in capsys.readouterr().err
    assert main(["attack", "--model", "small_cnn", "--random-weights", "--data", "synthetic:test", "--shifts",
                 "grid:1", "--mode", "zero", "--out", str(tmp_path / "a")]) == 130
    assert "rerun the same attack command with --resume" in capsys.readouterr().err
    assert main(["stability", "--model", "small_cnn", "--random-weights", "--data", "synthetic:test",
                 "--out", str(tmp_path / "s")]) == 130
    assert "no results were written" in capsys.readouterr().err


def test_help_does_not_import_torch():
    """``shiftattack --help`` and every subcommand's ``--help`` answer without loading torch."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom shiftattack.cli import main\n"
        "for c in ([], ['attack'], ['certify'], ['verify'], ['benchmark'], ['corrupt'], ['train'],\n"
        "          ['stability'], ['demo'], ['report'], ['compare']):\n"
        "    try:\n        main([*c, '--help'])\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.split()[-2:] == ["False", "False"], done.stderr
    assert "usage: shiftattack" in done.stdout


def test_public_names_load_on_first_use():
    import shiftattack
    from shiftattack import attack, parse_shifts, shift

    assert shiftattack.shift is shift and callable(attack) and parse_shifts("grid:1").size == 9
    assert set(shiftattack.__all__) <= set(dir(shiftattack))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        shiftattack.nope  # noqa: B018
