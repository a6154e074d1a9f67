"""stability.json: consistency per mode and Zhang's diagonal curve, against independent checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shiftattack.data import load_dataset
from shiftattack.jobs.stability import stability_document
from shiftattack.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    d = load_dataset("synthetic:test", limit=24)
    return d.float_images(), d.labels


def test_circular_consistency_is_100_for_an_invariant_model_and_not_for_a_positional_one(data):
    """Circular conv + global average pool is exactly invariant to circular shifts; a linear layer
    over every pixel is not. The document's consistency must tell them apart."""
    x, y = data
    torch.manual_seed(3)
    invariant = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, 8),
    ).eval()  # fmt: skip
    positional = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 8)).eval()
    with torch.no_grad():
        assert len(set(invariant(x).argmax(1).tolist())) > 1  # not a constant classifier
    doc = stability_document(invariant, x, y, modes=("circular",), max_shift=3, pad=4)
    assert doc["consistency"]["circular"] == 100.0
    assert (
        stability_document(positional, x, y, modes=("circular",), max_shift=3, pad=4)["consistency"][
            "circular"
        ]
        < 100
    )


def test_the_diagonal_curve_is_centred_on_the_unshifted_image(data):
    x, y = data
    torch.manual_seed(1)
    net = create_model("small_cnn", num_classes=8, width=8).eval()
    doc = stability_document(net, x, y, modes=("zero",), pad=4)
    d = doc["diagonal"]
    assert d["offsets"] == list(range(4, -5, -1))
    centre = d["offsets"].index(0)
    with torch.no_grad():
        logits = net(x)
    assert d["accuracy"][centre] == pytest.approx(float((logits.argmax(1) == y).double().mean()))
    assert d["correct_prob"][centre] == pytest.approx(
        float(logits.softmax(1)[torch.arange(len(y)), y].mean())
    )
    # d = +2: the content moved by (2, 2) px inside the reflect-padded canvas, checked by hand
    canvas = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    window = canvas[..., 2 : 2 + 32, 2 : 2 + 32]
    with torch.no_grad():
        acc = float((net(window).argmax(1) == y).double().mean())
    assert d["accuracy"][d["offsets"].index(2)] == pytest.approx(acc)


def test_flip_rate_against_hand_cropped_windows(data):
    """flip_rate[u][d-1] = percent of images whose top-1 differs between the centred window and
    the window whose content moved d px along u, recomputed here by slicing the canvas."""
    x, y = data

    class PixelLogits(nn.Module):  # logits = 8 fixed pixels: as positional as a model can be
        def forward(self, z):
            return z[:, 0, 8:24:2, 15]

    net = PixelLogits()
    doc = stability_document(net, x, y, modes=("zero",), pad=3)
    fr = doc["flip_rate"]
    assert fr["max_distance"] == 3 and fr["mode"] == "crop" and fr["n_images"] == len(y)
    canvas = torch.nn.functional.pad(x, (3, 3, 3, 3), mode="reflect")

    def top1(dx, dy):  # content moved by (dx, dy): the window's corner moves by (-dx, -dy)
        with torch.no_grad():
            return net(canvas[..., 3 - dy : 3 - dy + 32, 3 - dx : 3 - dx + 32]).argmax(1)

    centre = top1(0, 0)
    for name, (ux, uy) in {"horizontal": (1, 0), "vertical": (0, 1), "diagonal": (1, 1)}.items():
        expected = [100.0 * float((top1(d * ux, d * uy) != centre).double().mean()) for d in (1, 2, 3)]
        assert fr["rates"][name] == pytest.approx(expected)
    assert fr["mean_flip_rate"] == pytest.approx(
        sum(sum(r) for r in fr["rates"].values()) / 9)
    assert 0 < fr["mean_flip_rate"] < 100  # the comparison above is not vacuous


def test_flip_distance_beyond_the_canvas_is_refused(data):
    x, y = data
    net = create_model("small_cnn", num_classes=8, width=8).eval()
    with pytest.raises(Exception, match="flip_distance must be in 1..pad"):
        stability_document(net, x, y, modes=("zero",), pad=2, flip_distance=3)


def test_canvas_protocol_document_against_hand_cropped_windows():
    """Zhang's crop protocol on canvases: the diagonal's 0 is the centred window, flips match slicing."""
    from shiftattack.jobs.stability import canvas_stability_document

    torch.manual_seed(5)
    canvases = torch.rand(6, 3, 20, 20)
    labels = torch.arange(6) % 4

    class PixelLogits(nn.Module):
        def forward(self, z):
            return z[:, 0, 2:10:2, 7]

    net = PixelLogits()
    doc = canvas_stability_document(net, canvases, labels, size=12, n_repeats=3, flip_distance=4)
    d = doc["diagonal"]
    assert d["offsets"][0] == 4 and d["offsets"][-1] == -4 and len(d["offsets"]) == 9
    centred = net(canvases[..., 4:16, 4:16]).argmax(1)
    assert d["accuracy"][d["offsets"].index(0)] == pytest.approx(float((centred == labels).double().mean()))
    fr = doc["flip_rate"]

    def top1(dx, dy):  # content shift (dx, dy) from the centred window
        return net(canvases[..., 4 - dy : 16 - dy, 4 - dx : 16 - dx]).argmax(1)

    base = top1(0, 0)  # the centred window
    expected = [100 * float((top1(k, 0) != base).double().mean()) for k in range(1, 5)]
    assert fr["rates"]["horizontal"] == pytest.approx(expected)
    assert 0 <= doc["consistency"]["crop"] <= 100
    with pytest.raises(Exception, match="flip_distance must be in 1..4"):
        canvas_stability_document(net, canvases, labels, size=12, flip_distance=5)
