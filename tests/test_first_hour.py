"""A newcomer's first hour (issue 21), through the command line: nothing silent, clear errors for
the usual mistakes, nothing left behind by a failed run, logs without carriage returns."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from shiftattack.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _attack(*args: str) -> list[str]:
    return ["attack", "--model", "small_cnn", "--quiet", *args]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    from shiftattack.models import create_model

    path = tmp_path_factory.mktemp("w") / "small_cnn.pt"
    torch.save(create_model("small_cnn").state_dict(), path)
    return path


@pytest.mark.data
def test_crop_mode_with_a_canvas_pad_feeds_the_image_size(cifar_zip, weights, tmp_path, capsys):
    out = tmp_path / "crop"
    code = main(["attack", "--model", "small_cnn", "--weights", str(weights), "--data", f"{cifar_zip}:test",
                 "--limit", "20", "--mode", "crop", "--canvas-pad", "4", "--shifts", "grid:3", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["threat"]["crop_size"] == [32, 32]
    assert "crop 32x32 px" in capsys.readouterr().out  # the summary says what the model was fed


@pytest.mark.data
def test_crop_radius_beyond_the_pad_and_crop_without_a_canvas_are_errors(cifar_zip, weights, tmp_path, capsys):
    base = ["--weights", str(weights), "--data", f"{cifar_zip}:test", "--limit", "10", "--mode", "crop"]
    assert main(_attack(*base, "--canvas-pad", "4", "--shifts", "grid:5", "--out", str(tmp_path / "a"))) == 2
    err = capsys.readouterr().err
    assert "5 px" in err and "--canvas-pad is 4 px" in err
    assert main(_attack(*base, "--shifts", "grid:3", "--out", str(tmp_path / "b"))) == 2
    err = capsys.readouterr().err
    assert "--canvas-pad" in err and "--crop-size" in err
    assert main(_attack(*base, "--crop-size", "24", "--shifts", "grid:3", "--out", str(tmp_path / "c"))) == 0
    assert json.loads((tmp_path / "c" / "results.json").read_text())["threat"]["crop_size"] == [24, 24]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_mean_with_the_wrong_number_of_values_names_option_count_and_channels(weights, tmp_path, capsys):
    code = main(_attack("--weights", str(weights), "--mean", "0.5,0.5", "--std", "0.2,0.2", "--data", "synthetic:test", "--limit", "4",
                        "--shifts", "grid:1", "--mode", "zero", "--out", str(tmp_path / "o")))
    err = capsys.readouterr().err
    assert code == 2 and "--mean has 2 values" in err and "3 channels" in err


def test_a_text_file_as_weights_is_diagnosed(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not weights\n")
    code = main(_attack("--weights", str(text), "--data", "synthetic:test", "--limit", "4", "--shifts", "grid:1",
                        "--mode", "zero", "--out", str(tmp_path / "o")))
    err = capsys.readouterr().err
    assert code == 2 and "not a PyTorch checkpoint" in err and "not safetensors" in err
    assert "pickle" not in err.split("not a PyTorch checkpoint")[0]  # not misread as a pickle problem


def test_safetensors_weights_load(weights, tmp_path):
    from safetensors.torch import save_file

    from shiftattack.models import load_model

    state = torch.load(weights, weights_only=True)
    save_file(state, str(tmp_path / "w.safetensors"))
    a, b = load_model("small_cnn", weights), load_model("small_cnn", tmp_path / "w.safetensors")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


NAN_MODEL = """
import torch
FIXED = {fixed}
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 8)
    def forward(self, x):
        out = self.lin(x.mean((2, 3)))
        if FIXED:
            return out
        black_top = x[:, :, 0, :].abs().sum((1, 2)) == 0  # a shift moved the border in
        return torch.where(black_top[:, None], torch.full_like(out, float("nan")), out)
def make():
    torch.manual_seed(0)
    return Net()
"""


def test_nan_logits_exit_2_naming_image_and_shift_and_leave_nothing(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(NAN_MODEL.format(fixed=False))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "shiftattack", "attack", "--model", f"{model}:make", "--data", "synthetic:test",
           "--limit", "8", "--shifts", "grid:1", "--mode", "zero", "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "NaN or Inf logits for image" in done.stderr and "under the shift (dx=" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
    model.write_text(NAN_MODEL.format(fixed=True))
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)  # no --overwrite needed
    assert done.returncode == 0, done.stderr
    assert (out / "results.json").is_file()


def test_verify_of_a_missing_certificate_exits_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nothing.json")]) == 2
    assert "no certificate at" in capsys.readouterr().err


def test_foolbox_without_its_extra_is_one_line_naming_the_install(tmp_path):
    code = ("import sys\nsys.modules['eagerpy'] = None\nfrom shiftattack.cli import main\n"
            f"sys.exit(main(['attack', '--model', 'small_cnn', '--random-weights', '--data', 'synthetic:test', '--limit', '4', "
            f"'--shifts', 'grid:1', '--mode', 'zero', '--attack', 'foolbox', '--out', r'{tmp_path / 'o'}', "
            "'--quiet']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "pip install 'shiftattack[foolbox]'" in lines[0]
    assert not (tmp_path / "o").exists()


def test_shift_help_says_which_sets_need_interp(capsys):
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "engstrom) need --interp bilinear or fourier" in text


@pytest.mark.data
def test_a_redirected_log_has_no_carriage_returns(cifar_zip, weights, tmp_path):
    log = tmp_path / "attack.log"
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "shiftattack", "attack", "--model", "small_cnn", "--weights",
                               str(weights), "--data", f"{cifar_zip}:test", "--limit", "500", "--shifts", "grid:2",
                               "--mode", "zero", "--out", str(tmp_path / "o")], stdout=fh, stderr=fh, env=ENV,
                              timeout=600)
    assert done.returncode == 0
    text = log.read_text()
    assert "\r" not in text
    assert "500/500" in text and "worst-case accuracy" in text  # the final progress line and the summary


@pytest.mark.parametrize(("spec", "fix"), [("small_cnn", "--weights FILE"),
                                           ("torchvision:resnet18", "--pretrained")])
def test_a_model_without_weights_is_refused_with_the_fix(spec, fix, tmp_path, capsys):
    code = main(["attack", "--model", spec, "--data", "synthetic:test", "--limit", "4", "--shifts", "grid:1",
                 "--mode", "zero", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "has no weights" in err and fix in err and "--random-weights" in err
    assert not (tmp_path / "o").exists()


def test_random_weights_runs_and_says_so_in_the_results(tmp_path):
    args = ["attack", "--model", "small_cnn", "--random-weights", "--data", "synthetic:test", "--limit", "16",
            "--shifts", "grid:1", "--mode", "zero", "--quiet"]
    torch.manual_seed(1)
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "results.json").read_text())["model"]["random_weights"] is True
    torch.manual_seed(2)  # the random network is the same whatever the caller's generator did
    assert main([*args, "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "o" / "results.json").read_bytes() == (tmp_path / "p" / "results.json").read_bytes()


UNSEEDED = """
import torch
def make():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8))
"""


def test_resume_refuses_units_of_a_factory_that_built_other_parameters(tmp_path):
    model = tmp_path / "net.py"
    model.write_text(UNSEEDED)  # a new random network in every process
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "shiftattack", "attack", "--model", f"{model}:make", "--data", "synthetic:test",
           "--limit", "8", "--shifts", "grid:1", "--mode", "zero", "--chunk-size", "4", "--out", str(out), "--quiet"]
    assert subprocess.run(cmd, env=ENV, timeout=300).returncode == 0
    (out / "units" / "chunk-00000004.json").unlink()
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 2 and "cannot resume" in done.stderr and "state_sha256" in done.stderr


def test_a_users_factory_may_load_its_own_weights(tmp_path):
    factory = tmp_path / "net.py"
    factory.write_text("from shiftattack.models import SmallCNN\ndef make():\n    return SmallCNN(num_classes=8)\n")
    assert main(["attack", "--model", f"{factory}:make", "--data", "synthetic:test", "--limit", "4",
                 "--shifts", "grid:1", "--mode", "zero", "--out", str(tmp_path / "o"), "--quiet"]) == 0


FAILING_LATER = """
import torch
BROKEN = {broken}
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 8)
    def forward(self, x):
        if BROKEN and bool(((x * 255 - 10).abs() < 0.5).any()):  # image 10 lives in the third chunk
            raise RuntimeError("cannot handle this image")
        return self.lin(x.mean((2, 3)))
def make():
    torch.manual_seed(0)
    return Net()
"""


def test_a_later_failure_keeps_the_finished_units_and_says_resume_continues(tmp_path):
    import numpy as np

    data = tmp_path / "levels.npz"  # image k: every pixel = k
    np.savez(data, x=np.repeat(np.arange(12, dtype=np.uint8), 32 * 32 * 3).reshape(12, 32, 32, 3),
             y=np.arange(12) % 8)
    model = tmp_path / "net.py"
    model.write_text(FAILING_LATER.format(broken=True))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "shiftattack", "attack", "--model", f"{model}:make", "--data", str(data),
           "--shifts", "grid:1", "--mode", "zero", "--chunk-size", "4", "--out", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 2 and "cannot handle this image" in done.stderr
    assert "2 finished units kept in" in done.stderr and "--resume to continue" in done.stderr
    model.write_text(FAILING_LATER.format(broken=False))
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())["n_images"] == 12


def _cifar_folder(cifar_zip, root, per_class: int = 2):
    """A folder ``root/<class>/<file>.jpg`` of real CIFAR-10 test images, ``per_class`` of each class."""
    import zipfile

    with zipfile.ZipFile(cifar_zip) as zf:
        members = sorted(n for n in zf.namelist() if n.startswith("test/") and n.endswith(".jpg"))
        taken: dict[str, int] = {}
        for name in members:
            cls = name.split("/")[1]
            if taken.get(cls, 0) < per_class:
                taken[cls] = taken.get(cls, 0) + 1
                (root / cls).mkdir(parents=True, exist_ok=True)
                (root / cls / name.split("/")[2]).write_bytes(zf.read(name))
    return root


@pytest.mark.data
def test_non_image_files_in_class_folders_are_skipped_with_one_recorded_warning(cifar_zip, weights, tmp_path):
    root = _cifar_folder(cifar_zip, tmp_path / "images")
    (root / "cat" / "notes.txt").write_text("taken on my phone\n")
    (root / "dog" / "labels.csv").write_text("file,label\n")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\0")  # hidden: ignored, not counted
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "shiftattack", "attack", "--model", "small_cnn", "--weights", str(weights),
           "--data", str(root), "--shifts", "grid:1", "--mode", "circular", "--out", str(out), "--quiet"]
    env = {k: v for k, v in ENV.items() if k != "PYTHONWARNINGS"}  # the warning is the point
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("warning:")]
    assert len(lines) == 1, done.stderr
    assert "skipped 2 file(s) that are not images" in lines[0]
    assert "cat/notes.txt" in lines[0] and "dog/labels.csv" in lines[0] and "--strict-data" in lines[0]
    doc = json.loads((out / "results.json").read_text())
    assert doc["n_images"] == 20
    assert doc["data"]["warnings"] == [lines[0].removeprefix("warning: ")]
    strict = tmp_path / "strict"
    done = subprocess.run([*cmd[:-3], "--out", str(strict), "--strict-data", "--quiet"], capture_output=True,
                          text=True, env=ENV, timeout=300)
    assert done.returncode == 2 and "not an image file" in done.stderr and "cat/notes.txt" in done.stderr
    assert "Traceback" not in done.stderr and not strict.exists()


@pytest.mark.data
def test_results_csv_names_each_images_source_and_classes(cifar_zip, weights, tmp_path):
    import csv
    import zipfile

    out = tmp_path / "run"
    assert main(_attack("--weights", str(weights), "--data", f"{cifar_zip}:test", "--limit", "30",
                        "--shifts", "grid:1", "--mode", "circular", "--out", str(out))) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 30
    classes = sorted({n.split("/")[1] for n in zipfile.ZipFile(cifar_zip).namelist() if n.count("/") == 2})
    members = set(zipfile.ZipFile(cifar_zip).namelist())
    for row in rows:  # each source is a member of the archive, in the folder of its true class
        assert row["source"] in members
        assert row["source"].split("/")[1] == row["true_class"] == classes[int(row["label"])]
        assert row["pred_class"] == classes[int(row["clean_pred"])]
    # an .npz has no file names or class names: the source is the array row, the names empty
    import numpy as np

    arrays = tmp_path / "a.npz"
    np.savez(arrays, x=np.zeros((3, 32, 32, 3), np.uint8), y=np.array([0, 1, 2]))
    assert main(_attack("--weights", str(weights), "--data", str(arrays), "--shifts", "grid:1",
                        "--mode", "circular", "--out", str(tmp_path / "npz"))) == 0
    rows = list(csv.DictReader((tmp_path / "npz" / "results.csv").open()))
    assert [r["source"] for r in rows] == ["x[0]", "x[1]", "x[2]"] and rows[0]["true_class"] == ""


FACTORY = """
from shiftattack.models import create_model
def make():{extra}
    return create_model("small_cnn")
"""


def _zip_folder(folder, path):
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for f in sorted(folder.rglob("*.jpg")):
            zf.write(f, "test/" + f.relative_to(folder).as_posix())
    return path


@pytest.mark.data
def test_a_certificate_travels_and_verify_accepts_moved_files_only_with_their_sha256(cifar_zip, weights, tmp_path):
    import shutil

    made, elsewhere, moved = tmp_path / "made", tmp_path / "elsewhere", tmp_path / "moved"
    for d in (made, elsewhere, moved):
        d.mkdir()
    _zip_folder(_cifar_folder(cifar_zip, tmp_path / "imgs", per_class=2), made / "data.zip")
    _zip_folder(_cifar_folder(cifar_zip, tmp_path / "imgs3", per_class=3), tmp_path / "other.zip")
    (made / "net.py").write_text(FACTORY.format(extra=""))
    shutil.copy(weights, made / "w.pt")

    def run(*args, cwd):
        return subprocess.run([sys.executable, "-m", "shiftattack", *args, "--quiet"], cwd=cwd,
                              capture_output=True, text=True, env=ENV, timeout=300)

    done = run("certify", "--model", "net.py:make", "--weights", "w.pt", "--data", "data.zip:test",
               "--shifts", "grid:1", "--mode", "circular", "--out", "cert", cwd=made)
    assert done.returncode == 0, done.stderr
    cert = made / "cert" / "certificate.json"
    doc = json.loads(cert.read_text())
    assert doc["model"]["spec"] == "net.py:make" and doc["data"]["spec"] == "data.zip:test"  # as written
    assert doc["data"]["resolved_spec"] == f"{made / 'data.zip'}:test"
    assert doc["model"]["weights_path"] == str(made / "w.pt")
    # 1. from another directory: found at the recorded absolute paths
    done = run("verify", str(cert), cwd=elsewhere)
    assert done.returncode == 0 and "verified: 20 of 20" in done.stdout, done.stderr
    # 2. the data moved: not found (exit 2) until --data says where; other images are refused (exit 1)
    shutil.move(made / "data.zip", moved / "data.zip")
    assert run("verify", str(cert), cwd=elsewhere).returncode == 2
    done = run("verify", str(cert), "--data", f"{moved / 'data.zip'}:test", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    done = run("verify", str(cert), "--data", f"{tmp_path / 'other.zip'}:test", cwd=elsewhere)
    assert done.returncode == 1 and "differ from the certified data" in done.stderr
    # 3. weights and model file moved: accepted with the same bytes, refused with others
    shutil.move(made / "w.pt", moved / "w.pt")
    shutil.move(made / "net.py", moved / "net.py")
    ok = ["--data", f"{moved / 'data.zip'}:test", "--weights", str(moved / "w.pt"),
          "--model", f"{moved / 'net.py'}:make"]
    done = run("verify", str(cert), *ok, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    torch.manual_seed(1)
    from shiftattack.models import create_model

    torch.save(create_model("small_cnn").state_dict(), tmp_path / "other.pt")
    done = run("verify", str(cert), *ok[:2], "--weights", str(tmp_path / "other.pt"), *ok[4:], cwd=elsewhere)
    assert done.returncode == 1 and "--weights" in done.stderr and "not the weights file that was certified" \
        in done.stderr
    (tmp_path / "edited.py").write_text(FACTORY.format(extra="\n    print('changed')"))
    done = run("verify", str(cert), *ok[:4], "--model", f"{tmp_path / 'edited.py'}:make", cwd=elsewhere)
    assert done.returncode == 1 and "not the model file that was certified" in done.stderr


def test_after_resume_timing_says_what_this_command_did_and_what_the_whole_run_did(weights, tmp_path):
    out = tmp_path / "run"
    args = ["attack", "--model", "small_cnn", "--weights", str(weights), "--data", "synthetic:test", "--limit", "12",
            "--shifts", "grid:2", "--mode", "zero", "--chunk-size", "4", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "shiftattack", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "results.json").read_text())
    timing = json.loads((out / "timing.json").read_text())
    assert timing["this_command"]["n_evaluated"] == timing["whole_run"]["n_evaluated"] == doc["n_evaluated"]
    assert timing["this_command"]["units_computed"] == 3 and "resumed" not in done.stdout
    (out / "units" / "chunk-00000004.json").unlink()  # as if the run had been killed in its second chunk
    done = subprocess.run([sys.executable, "-m", "shiftattack", *args, "--resume"], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text()) == doc
    timing = json.loads((out / "timing.json").read_text())
    now, run = timing["this_command"], timing["whole_run"]
    second = sum(r["n_evaluated"] for r in doc["images"][4:8])  # counted from the results, not from timing
    assert (now["units_computed"], now["units_read_back"], now["n_evaluated"]) == (1, 2, second)
    assert run["units"] == 3 and run["n_evaluated"] == doc["n_evaluated"] and run["units_without_timing"] == 0
    assert now["forward_passes_per_second"] == pytest.approx(second / now["wall_seconds"])
    assert run["forward_passes_per_second"] == pytest.approx(doc["n_evaluated"] / run["unit_seconds_summed"])
    assert "2 of 3 units read back" in done.stdout
    assert f"this command        {second:>8d} forward passes" in done.stdout
    assert f"whole run           {doc['n_evaluated']:>8d} forward passes" in done.stdout


SLOW_MODEL = """
import os, time
import torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 8)
        self.calls = 0
    def forward(self, x):
        self.calls += 1
        if os.environ.get("SLOW_MODEL") and self.calls > 1:  # the checks before the first unit pass quickly
            time.sleep(0.5)
        return self.lin(x.mean((2, 3)))
def make():
    torch.manual_seed(0)
    return Net()
"""


def _resumable_command(command: str, model: str, out) -> list[str]:
    data = ["--data", "synthetic:test", "--limit", "16"]
    return {
        "attack": ["attack", "--model", model, *data, "--shifts", "grid:1", "--mode", "zero"],
        "certify": ["certify", "--model", model, *data, "--shifts", "grid:1", "--mode", "circular"],
        "benchmark": ["benchmark", "--suite", "cifar10-c", "--model", model, *data,
                      "--corruptions", "gaussian_noise,contrast", "--severities", "1"],
        "compare": ["compare", "--model", model, *data, "--radius", "1", "--consistency-repeats", "1"],
        "train": ["train", "--model", model, "--data", "synthetic:train", "--limit", "64", "--epochs", "1",
                  "--batch-size", "8"],
    }[command] + ["--out", str(out), "--quiet"]


@pytest.mark.parametrize("command", ["attack", "certify", "benchmark", "compare", "train"])
def test_ctrl_c_before_the_first_unit_leaves_nothing_and_the_same_command_then_works(command, tmp_path):
    import signal
    import time

    model = tmp_path / "net.py"
    model.write_text(SLOW_MODEL)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "shiftattack", *_resumable_command(command, f"{model}:make", out)]
    # a shell's background job (CI) starts with SIGINT ignored, which Python keeps: give the child the
    # default disposition, as a terminal's foreground process has
    proc = subprocess.Popen(argv, env={**ENV, "SLOW_MODEL": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not out.exists():  # the run has made its folder and is inside its first unit
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    done = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=300)  # no --overwrite
    assert done.returncode == 0, done.stderr


def test_a_missing_optional_part_stops_a_run_before_its_first_unit(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "shiftattack", "benchmark", "--suite", "cifar10-c", "--model", "small_cnn",
            "--random-weights", "--data", "synthetic:test", "--limit", "16", "--corruptions", "gaussian_noise,frost",
            "--severities", "1", "--out", str(out), "--quiet"]
    done = subprocess.run(argv, env={**ENV, "SHIFTATTACK_FROST_DIR": str(tmp_path / "missing")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "SHIFTATTACK_FROST_DIR" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()  # frost is the second corruption: checked before gaussian_noise ran


def test_batch_size_auto_picks_the_probes_fastest_and_changes_no_result(weights, tmp_path):
    """Issue 22: --batch-size auto. The size used is the probe's fastest, recorded in results.json; the
    per-image results equal a run with another batch size; --resume keeps the size chosen first."""
    base = ["attack", "--model", "small_cnn", "--weights", str(weights), "--data", "synthetic:test", "--limit", "24",
            "--shifts", "grid:2", "--mode", "zero", "--chunk-size", "8", "--quiet"]
    assert main([*base, "--batch-size", "auto", "--out", str(tmp_path / "auto")]) == 0
    doc = json.loads((tmp_path / "auto" / "results.json").read_text())
    probe = json.loads((tmp_path / "auto" / "timing.json").read_text())["batch_size_probe"]
    rates = {int(b): r for b, r in probe["inputs_per_second"].items()}
    fastest = max(rates, key=rates.get)
    chosen = 256 if 256 in rates and rates[fastest] <= 1.05 * rates[256] else fastest  # noise: keep the default
    assert doc["attack"]["batch_size"] == probe["batch_size"] == chosen
    assert set(rates) <= {32, 64, 128, 256, 512, 1024} and 32 in rates
    assert main([*base, "--batch-size", "7", "--out", str(tmp_path / "seven")]) == 0
    other = json.loads((tmp_path / "seven" / "results.json").read_text())
    keys = ("index", "label", "clean_pred", "robust", "worst_shift", "n_evaluated")
    assert [[r[k] for k in keys] for r in doc["images"]] == [[r[k] for k in keys] for r in other["images"]]
    (tmp_path / "auto" / "units" / "chunk-00000008.json").unlink()
    assert main([*base, "--batch-size", "auto", "--out", str(tmp_path / "auto"), "--resume"]) == 0
    again = json.loads((tmp_path / "auto" / "timing.json").read_text())["batch_size_probe"]
    assert again == probe and json.loads((tmp_path / "auto" / "results.json").read_text()) == doc


def test_batch_size_auto_is_refused_where_it_does_not_apply(tmp_path, capsys):
    code = main(["certify", "--model", "small_cnn", "--random-weights", "--data", "synthetic:test", "--limit", "4",
                 "--shifts", "grid:1", "--mode", "zero", "--batch-size", "auto", "--out", str(tmp_path / "c")])
    assert code == 2 and "--batch-size auto applies to attack" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
