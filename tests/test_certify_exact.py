"""``certify --method exact`` and ``verify``: brute force, the certificate file, tampering, resume."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from _brute import brute_grid

from shiftattack.certify import CertificateError, certify_exact, load_certificate
from shiftattack.certify.document import canonical_sha256, seal
from shiftattack.certify.exact import certified_radius
from shiftattack.cli import main
from shiftattack.jobs.verify import verify_certificate
from shiftattack.shifts.threats import ThreatModel, parse_shifts

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL_FILE = textwrap.dedent(
    """
    import torch
    from torch import nn

    def factory():
        torch.manual_seed(2)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(6 * 6 * 6, 4))
    """
)


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((30, 3, 4, 4)))
    smooth = torch.nn.functional.interpolate(coarse, size=12, mode="bilinear", align_corners=False)
    x = (smooth.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    model_path = tmp_path / "model.py"
    model_path.write_text(MODEL_FILE)
    ns: dict = {}
    exec(MODEL_FILE, ns)
    net = ns["factory"]().eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    with torch.no_grad():
        y = net(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
    y[::6] = (y[::6] + 1) % 4  # some clean mistakes
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return {
        "model": f"{model_path}:factory",
        "weights": tmp_path / "w.pt",
        "data": tmp_path / "data.npz",
        "x": x,
        "y": y,
        "net": net,
        "tmp": tmp_path,
    }


def _certify(files, out, *extra: str) -> int:
    return main(
        [
            "certify",
            "--model",
            files["model"],
            "--weights",
            str(files["weights"]),
            "--data",
            str(files["data"]),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
            *extra,
        ]
    )


@pytest.mark.parametrize("mode", ["zero", "circular", "reflect"])
def test_exact_certificate_equals_brute_force(files, mode):
    x = torch.from_numpy(files["x"]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(files["y"]).long()
    threat = ThreatModel(parse_shifts("grid:2"), mode=mode)
    result = certify_exact(files["net"], x, y, threat, batch_size=16, device="cpu")
    ref = brute_grid(files["net"], x, y, 2, mode)
    assert result.robust.tolist() == ref["robust"]
    assert 0 < sum(ref["robust"]) < len(ref["robust"])  # the set separates the images
    for k, robust in enumerate(ref["robust"]):
        if robust:  # the exact minimum margin over the set, at a shift reaching it
            assert float(result.worst_margin[k]) == pytest.approx(ref["min_margin"][k], abs=1e-5)
            dx, dy = result.shift_list(k)
            assert ref["margins"][k][(dx, dy)] == pytest.approx(ref["min_margin"][k], abs=1e-5)
    radius = certified_radius(result)
    for k, fr in enumerate(ref["fool_radius"]):
        expect = None if fr == 0 else (2 if fr == float("inf") else fr - 1)
        assert radius[k] == expect


def test_cli_certificate_contract_and_attack_agreement(files):
    out = files["tmp"] / "cert"
    assert _certify(files, out, "--shifts", "grid:2", "--mode", "zero") == 0
    doc = load_certificate(out / "certificate.json")
    for key in (
        "certified_accuracy",
        "clean_accuracy",
        "threat",
        "model",
        "data",
        "versions",
        "device",
        "dtype",
        "images",
        "integrity",
    ):
        assert key in doc
    assert doc["model"]["weights_sha256"] and doc["model"]["state_sha256"] and doc["data"]["sha256"]
    rec = doc["images"][0]
    assert set(rec) >= {
        "index",
        "label",
        "clean_pred",
        "robust",
        "worst_shift",
        "worst_margin",
        "n_evaluated",
        "certified",
        "certified_radius",
    }
    att = files["tmp"] / "att"
    assert (
        main(
            [
                "attack",
                "--model",
                files["model"],
                "--weights",
                str(files["weights"]),
                "--data",
                str(files["data"]),
                "--shifts",
                "grid:2",
                "--mode",
                "zero",
                "--out",
                str(att),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    attack_doc = json.loads((att / "results.json").read_text())
    assert doc["certified_accuracy"] == attack_doc["worst_case_accuracy"]
    assert [r["certified"] for r in doc["images"]] == [r["robust"] for r in attack_doc["images"]]
    curve = doc["certified_accuracy_vs_radius"]
    assert [row["radius"] for row in curve] == [0, 1, 2]
    assert curve[0]["certified_accuracy"] == doc["clean_accuracy"]
    assert curve[-1]["certified_accuracy"] == doc["certified_accuracy"]
    assert (out / "certificate.csv").read_text().count("\n") == 31


def _tamper(path, edit, reseal: bool = True) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    if reseal:
        doc = seal(doc)
    path.write_text(json.dumps(doc))


def test_verify_passes_then_catches_every_tampering(files, capsys):
    out = files["tmp"] / "cert"
    assert _certify(files, out, "--shifts", "grid:2", "--mode", "zero") == 0
    path = out / "certificate.json"
    pristine = path.read_text()
    assert main(["verify", str(path), "--device", "cpu", "--quiet"]) == 0
    assert "all agree" in capsys.readouterr().out
    assert main(["verify", str(out), "--sample", "5", "--quiet"]) == 0
    doc = json.loads(pristine)
    certified = next(k for k, r in enumerate(doc["images"]) if r["certified"])
    fooled = next(
        k for k, r in enumerate(doc["images"]) if not r["certified"] and r["clean_pred"] == r["label"]
    )

    def margin(d):
        d["images"][certified]["worst_margin"] += 0.5

    def flag(d):
        d["images"][fooled]["certified"] = True
        d["images"][fooled]["robust"] = True
        n = len(d["images"])
        d["certified_accuracy"] = sum(r["certified"] for r in d["images"]) / n

    def shift(d):
        d["images"][fooled]["worst_shift"] = [0, 0]

    cases = [
        (margin, True, "margin"),
        (flag, True, "certified=True"),
        (shift, True, "margin there"),
        (margin, False, "modified after it was written"),
    ]
    for edit, reseal, message in cases:
        path.write_text(pristine)
        _tamper(path, edit, reseal)
        assert main(["verify", str(path), "--device", "cpu", "--quiet"]) == 1
        assert message in capsys.readouterr().err
    # malformed files
    for text, message in [
        ("{not json", "not valid JSON"),
        ("[]", "JSON object"),
        (json.dumps({**json.loads(pristine), "schema": "other/v9"}), "schema"),
    ]:
        path.write_text(text)
        assert main(["verify", str(path), "--quiet"]) == 1
        assert message in capsys.readouterr().err


def test_verify_refuses_other_weights_and_other_data(files, capsys):
    out = files["tmp"] / "cert"
    assert _certify(files, out, "--shifts", "grid:1", "--mode", "circular") == 0
    state = torch.load(files["weights"])
    state["0.bias"] = state["0.bias"] + 1e-3
    torch.save(state, files["weights"])
    assert main(["verify", str(out), "--quiet"]) == 1
    assert "weights file" in capsys.readouterr().err
    with pytest.raises(CertificateError, match="weights"):
        verify_certificate(out)
    # restore the weights, change one pixel of the data
    torch.save(files["net"].state_dict(), files["weights"])
    assert main(["verify", str(out), "--quiet"]) == 0
    x = files["x"].copy()
    x[3, 0, 0, 0] ^= 1
    np.savez(files["data"], x=x, y=files["y"])
    assert main(["verify", str(out), "--quiet"]) == 1
    assert "differ from the certified data" in capsys.readouterr().err


def test_resume_recomputes_only_missing_chunks_and_gives_the_same_file(files):
    out = files["tmp"] / "cert"
    assert _certify(files, out, "--shifts", "grid:2", "--mode", "zero", "--chunk-size", "8") == 0
    first = (out / "certificate.json").read_text()
    units = sorted((out / "units").glob("chunk-*.json"))
    assert len(units) == 4
    units[2].unlink()
    (out / "certificate.json").unlink()
    stamps = {u: u.stat().st_mtime_ns for u in units if u.exists()}
    assert _certify(files, out, "--shifts", "grid:2", "--mode", "zero", "--chunk-size", "8", "--resume") == 0
    assert (out / "certificate.json").read_text() == first
    assert all(u.stat().st_mtime_ns == t for u, t in stamps.items())
    # a different run identity is refused rather than mixed
    assert _certify(files, out, "--shifts", "grid:1", "--mode", "zero", "--chunk-size", "8", "--resume") == 2


def test_certify_errors(files, capsys):
    out = files["tmp"] / "bad"
    assert _certify(files, out, "--shifts", "random:2:5", "--mode", "zero") == 2
    assert "finite set" in capsys.readouterr().err
    assert not out.exists()
    assert _certify(files, out, "--shifts", "grid:20", "--mode", "zero") == 2
    assert "too large" in capsys.readouterr().err


def test_integrity_digest_ignores_key_order():
    doc = seal({"b": 1, "a": [1.5, None]})
    reordered = {k: doc[k] for k in reversed(list(doc))}
    assert canonical_sha256(reordered) == doc["integrity"]["sha256"]
