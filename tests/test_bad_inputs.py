"""The bad-input catalogue: one test per item, each a clear message and no partial output.

Every case runs the real command line (``shiftattack attack`` unless the item is
about another command) on a small dataset and checks the exit status, the
message, and that the output folder was not created (or, for a warning, that the
run completed with the right images).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _models import LINEAR_SOURCE
from PIL import Image

from shiftattack.api import attack
from shiftattack.cli import main
from shiftattack.errors import DataError, OutputError
from shiftattack.models import SmallCNN
from shiftattack.runtime.results import write_json

MODELS = LINEAR_SOURCE + '''

class Raises(Linear):
    def forward(self, x):
        raise ValueError("boom inside the model")


def raises():
    return Raises().eval()


class WrongShape(Linear):
    def forward(self, x):
        return super().forward(x)[:, :, None]


def wrong_shape():
    return WrongShape().eval()


class OutOfMemory(Linear):
    """Raises CUDA's out-of-memory error for batches above 8 (on any device)."""

    def forward(self, x):
        if x.shape[0] > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().forward(x)


def out_of_memory():
    return OutOfMemory().eval()


class AlwaysOutOfMemory(Linear):
    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def always_out_of_memory():
    return AlwaysOutOfMemory().eval()


class Slow(Linear):
    """20 ms per call: a run long enough to be interrupted part-way on any machine."""

    def forward(self, x):
        import time

        time.sleep(0.02)
        return super().forward(x)


def slow():
    return Slow().eval()
'''


@pytest.fixture()
def env(tmp_path):
    (tmp_path / "models.py").write_text(MODELS)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    y = np.arange(24) % 4
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return tmp_path


def _attack(env: Path, *extra: str, model: str = "linear", data: str | None = None, out: str = "out",
            shifts: str = "grid:1") -> list[str]:
    return ["attack", "--model", f"{env / 'models.py'}:{model}", "--data", data or str(env / "data.npz"),
            "--shifts", shifts, "--mode", "zero", "--out", str(env / out), "--device", "cpu", "--quiet", *extra]


def _fails(capsys, argv: list[str], *phrases: str, out: Path | None) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err
    if out is not None:
        assert not out.exists(), f"{out} was created"
    return err


def _folder(env: Path, images: dict[str, Image.Image | bytes]) -> Path:
    root = env / "folder"
    for name, img in images.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(img, bytes):
            path.write_bytes(img)
        else:
            img.save(path)
    return root


def _rgb(seed: int, size: int = 16, mode: str = "RGB") -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


# 1. corrupt JPEG in a folder: skipped with a warning, or an error under --strict
def test_corrupt_jpeg_is_skipped_with_a_warning_or_refused_under_strict(env, capsys):
    good = {f"c{k}/{i}.jpg": _rgb(10 * k + i) for k in range(4) for i in range(3)}
    jpeg = (env / "tmp.jpg")
    _rgb(99).save(jpeg)
    broken = jpeg.read_bytes()[:200]  # a JPEG cut off after its header
    root = _folder(env, {**good, "c2/broken.jpg": broken})
    assert main(_attack(env, data=str(root))) == 0
    err = capsys.readouterr().err
    assert "warning: skipped 1 unreadable image file(s) of 13" in err and "broken.jpg" in err
    assert "--strict" in err
    doc = json.loads((env / "out" / "results.json").read_text())
    assert doc["n_images"] == 12
    _fails(capsys, _attack(env, "--strict", data=str(root), out="strict"), "broken.jpg", "--strict",
           out=env / "strict")


# 2. truncated .npz
def test_truncated_npz(env, capsys):
    data = (env / "data.npz").read_bytes()
    (env / "cut.npz").write_bytes(data[: len(data) // 2])
    _fails(capsys, _attack(env, data=str(env / "cut.npz")), "cut.npz", "truncated or corrupt", out=env / "out")


# 3. wrong dtype
def test_wrong_dtype(env, capsys):
    np.savez(env / "float.npz", x=np.zeros((4, 16, 16, 3), np.float32), y=np.zeros(4, np.int64))
    _fails(capsys, _attack(env, data=str(env / "float.npz")), "'x' has dtype float32", "uint8",
           out=env / "out")


# 4. grayscale and RGBA images: converted with a warning (folders), refused with the reason (.npz)
def test_grayscale_and_rgba_images(env, capsys):
    images = {f"c{k}/{i}.png": _rgb(10 * k + i) for k in range(4) for i in range(2)}
    images["c0/gray.png"] = _rgb(50, mode="L")
    images["c1/alpha.png"] = _rgb(51, mode="RGBA")
    root = _folder(env, images)
    assert main(_attack(env, data=str(root))) == 0
    err = capsys.readouterr().err
    assert "warning: converted 2 of 10 images to RGB (1 L, 1 RGBA)" in err and "alpha" in err
    np.savez(env / "rgba.npz", x=np.zeros((4, 16, 16, 4), np.uint8), y=np.zeros(4, np.int64))
    _fails(capsys, _attack(env, data=str(env / "rgba.npz"), out="o2"), "4 channels", "RGB", out=env / "o2")
    np.savez(env / "gray.npz", x=np.zeros((4, 16, 16), np.uint8), y=np.zeros(4, np.int64))
    _fails(capsys, _attack(env, data=str(env / "gray.npz"), out="o3"), "grayscale", out=env / "o3")


# 5. mixed sizes
def test_mixed_sizes(env, capsys):
    root = _folder(env, {"a/0.png": _rgb(0), "b/1.png": _rgb(1, size=20)})
    _fails(capsys, _attack(env, data=str(root)), "different sizes", "16x16", "20x20", "--resize",
           out=env / "out")


# 6. labels out of range
def test_labels_out_of_range(env, capsys):
    np.savez(env / "labels.npz", x=np.zeros((4, 16, 16, 3), np.uint8), y=np.array([0, 1, 2, 7]))
    _fails(capsys, _attack(env, data=str(env / "labels.npz")), "labels range over [0, 7]", "4 classes",
           out=env / "out")
    _fails(capsys, ["benchmark", "--suite", "cifar10-c", "--model", f"{env / 'models.py'}:linear", "--data",
                    str(env / "labels.npz"), "--corruptions", "fog", "--severities", "1", "--out", str(env / "b"),
                    "--quiet"], "labels range over [0, 7]", "4 classes", out=env / "b")


# 7. NaN/Inf pixels (the Python API: the command line reads uint8 files, which cannot hold them)
def test_nan_and_inf_pixels():
    x = torch.rand(2, 3, 16, 16)
    for bad in (float("nan"), float("inf")):
        x[1, 0, 3, 3] = bad
        with pytest.raises(DataError, match="NaN or Inf"):
            attack(SmallCNN(num_classes=4), x, torch.tensor([0, 1]), shifts="grid:1", device="cpu")


# 8. a model that raises
def test_model_that_raises(env, capsys):
    _fails(capsys, _attack(env, model="raises"), "the model raised ValueError", "boom inside the model",
           out=env / "out")


# 9. a model returning the wrong shape
def test_model_returning_the_wrong_shape(env, capsys):
    _fails(capsys, _attack(env, model="wrong_shape"), "logits of shape", "(1, 4, 1)", out=env / "out")


# 10. out of memory: halve the batch, retry, say so; the results are those of a small batch
def test_out_of_memory_halves_the_batch_and_says_so(env, capsys):
    assert main(_attack(env, "--batch-size", "40", "--no-early-exit", model="out_of_memory")) == 0
    err = capsys.readouterr().err
    assert "warning: out of memory on cpu with a batch of 24; continuing with batches of 12" in err
    assert "with a batch of 12; continuing with batches of 6" in err  # 12 > 8 still fails: halved again
    assert main(_attack(env, "--batch-size", "6", "--no-early-exit", model="out_of_memory", out="small")) == 0
    a = json.loads((env / "out" / "results.json").read_text())
    b = json.loads((env / "small" / "results.json").read_text())
    strip = ("attack",)  # batch_size is recorded; everything measured must agree
    assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
    _fails(capsys, _attack(env, model="always_out_of_memory", out="never"), "out of memory on a single input",
           out=env / "never")


# 11. unwritable output folder (and a write that fails part-way)
def test_unwritable_output_folder(env, capsys, monkeypatch):
    blocker = env / "a-file"
    blocker.write_text("not a folder")
    _fails(capsys, _attack(env, out="a-file/out"), "cannot create output folder", "not a writable folder",
           out=blocker / "out")
    if os.geteuid() != 0:  # root may write anywhere
        ro = env / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        _fails(capsys, _attack(env, out="read-only/out"), "not a writable folder", out=ro / "out")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    target = env / "full"
    target.mkdir()
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OutputError, match="cannot write .*results.json: No space left on device"):
        write_json(target / "results.json", {"a": 1})
    assert list(target.iterdir()) == []  # no temporary file left


# 12. existing output folder without --overwrite
def test_existing_output_folder_without_overwrite(env, capsys):
    out = env / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")
    _fails(capsys, _attack(env), "already exists", "--overwrite", out=None)
    assert (out / "results.json").read_text() == "{}"
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


# 13. invalid shift or corruption spec
def test_invalid_shift_and_corruption_specs(env, capsys):
    _fails(capsys, _attack(env, shifts="grid:two"), "grid", out=env / "out")
    _fails(capsys, ["benchmark", "--suite", "cifar10-c", "--model", "small_cnn", "--data", str(env / "data.npz"),
                    "--corruptions", "no_such_blur", "--out", str(env / "b"), "--quiet"],
           "no corruption matches no_such_blur", "gaussian_noise", out=env / "b")
    _fails(capsys, ["benchmark", "--suite", "cifar10-c", "--model", "small_cnn", "--data", str(env / "data.npz"),
                    "--severities", "6", "--out", str(env / "b"), "--quiet"], "severities", out=env / "b")


# 14. a shift larger than the image
def test_shift_larger_than_the_image(env, capsys):
    _fails(capsys, _attack(env, shifts="grid:16"), "shift radius 16 px is too large for 16x16 images",
           out=env / "out")


# 15. Ctrl-C: stop cleanly, keep the finished units, --resume finishes the run
def test_ctrl_c_stops_cleanly_and_keeps_finished_units(env):
    np.savez(env / "big.npz", x=np.random.default_rng(1).integers(0, 256, (300, 16, 16, 3), dtype=np.uint8),
             y=np.arange(300) % 4)
    argv = [sys.executable, "-m", "shiftattack", *_attack(env, "--chunk-size", "5", "--no-early-exit",
                                                          data=str(env / "big.npz"), shifts="grid:3",
                                                          model="slow")]
    environ = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a shell's background job starts with SIGINT ignored, and Python then keeps ignoring it:
    # give the child the default disposition, as a terminal's foreground process has
    proc = subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    units = env / "out" / "units"
    deadline = time.monotonic() + 300
    while len(list(units.glob("chunk-*.json"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; the finished parts are kept" in err and "--resume" in err and "Traceback" not in err
    kept = len(list(units.glob("chunk-*.json")))
    assert 3 <= kept < 60 and not (env / "out" / "results.json").exists()
    assert not list(units.glob(".*.tmp"))
    done = subprocess.run([*argv, "--resume"], env=environ, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    timing = json.loads((env / "out" / "timing.json").read_text())
    assert timing["units_computed_per_process"] == [60 - kept]
