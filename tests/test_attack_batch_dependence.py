"""A model whose output depends on the batch: an error, never a result (issue 16, B).

Before the fix, a failure seen in a search batch but not confirmed by the grid
attack's separate confirmation pass left the image in the search, and the image
came out ``robust: true`` with a negative ``worst_margin`` (and ``certify --method
exact`` certified it); the non-exact attacks withdrew unconfirmed failures and
counted the image robust. Now any disagreement between the search and a separate
forward pass is a :class:`VerificationError`: through the command line, exit 2,
``error: ...``, and no output folder (no results.json / certificate.json).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _models import LINEAR_SOURCE

from shiftattack import attack
from shiftattack.attacks import GradientAttack, GridAttack, RandomAttack, VerificationError
from shiftattack.cli import main
from shiftattack.shifts.threats import ThreatModel, parse_shifts

pytestmark = pytest.mark.usefixtures("one_thread")

N = 24  # images; the trap below flips its predictions in batches larger than this

MODELS = LINEAR_SOURCE + textwrap.dedent(
    '''


    class BatchMean(Linear):
        """A linear map of the input minus the batch mean: every logit depends on the batch."""

        def forward(self, x):
            return self.fc((x - x.mean(0, keepdim=True)).flatten(1) * 4)


    class FlipsInLargeBatches(BatchMean):
        """Correct per-image logits in batches of up to 24, every prediction moved on in larger ones."""

        def forward(self, x):
            z = self.fc(x.flatten(1) * 4 - 2)
            return z.roll(1, dims=1) if x.shape[0] > 24 else z


    def batch_mean():
        return BatchMean().eval()


    def flips():
        return FlipsInLargeBatches().eval()
    '''
)


def _models() -> dict:
    ns: dict = {}
    exec(MODELS, ns)
    return ns


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((N, 3, 4, 4))).float()
    x = F.interpolate(coarse, size=16, mode="bilinear", align_corners=False).clamp(0, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def _float(x8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x8).permute(0, 3, 1, 2).float() / 255


@pytest.fixture()
def env(tmp_path):
    """models.py and one .npz per trap, labelled with the trap's own predictions on the whole set
    (so every image is correct in the clean pass and the search runs)."""
    (tmp_path / "models.py").write_text(MODELS)
    x8, ns = _images(), _models()
    for name in ("batch_mean", "flips"):
        with torch.no_grad():
            y = ns[name]()(_float(x8)).argmax(1).numpy()
        np.savez(tmp_path / f"{name}.npz", x=x8, y=y)
    return tmp_path


def _argv(env, command: str, model: str, shifts: str, *extra: str) -> list[str]:
    return [command, "--model", f"{env / 'models.py'}:{model}", "--data", str(env / f"{model}.npz"),
            "--shifts", shifts, "--mode", "zero", "--batch-size", "64", "--out", str(env / "out"),
            "--device", "cpu", "--quiet", *extra]


def _refused(capsys, env, argv: list[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    assert "the model's output depends on the batch" in err, err
    assert "search pass and a separate forward pass disagree for image" in err, err
    assert "model.eval()" in err and "--batch-size 1" in err, err
    # one unit (24 images), which failed: like every error before a unit finishes, no output folder
    assert not (env / "out").exists(), "the output folder was created"


@pytest.mark.parametrize("model, shifts, attack_name", [
    ("flips", "grid:2", "grid"),  # the case of the issue: robust with a negative margin before
    ("flips", "grid:2", "adaptive-no-early-exit"),
    ("flips", "random:2:8", "random"),  # unconfirmed failures were withdrawn (counted robust)
    ("batch_mean", "grid:2", "grid"),
    ("batch_mean", "grid:2", "gradient"),
])
def test_attack_command_refuses_a_batch_dependent_model(env, capsys, model, shifts, attack_name):
    extra = ["--no-early-exit"] if attack_name == "adaptive-no-early-exit" else [
        "--attack", attack_name]
    _refused(capsys, env, _argv(env, "attack", model, shifts, *extra))


@pytest.mark.parametrize("model, order", [
    ("flips", "radius"), ("flips", "adaptive"), ("batch_mean", "radius")])
def test_exact_certificate_refuses_a_batch_dependent_model(env, capsys, model, order):
    _refused(capsys, env, _argv(env, "certify", model, "grid:2", "--method", "exact", "--order", order))


def test_batch_size_one_is_the_way_out(env, capsys):
    """The fix the message suggests: with one pair per pass both passes see the same batch."""
    assert main(_argv(env, "attack", "flips", "grid:2", "--batch-size", "1")) == 0  # the last one counts
    assert (env / "out" / "results.json").exists()


@pytest.mark.parametrize("make", [
    lambda: GridAttack(ThreatModel(parse_shifts("grid:2"), mode="zero"), batch_size=64),
    lambda: GridAttack(ThreatModel(parse_shifts("grid:2"), mode="zero"), batch_size=64, order="radius"),
    lambda: GridAttack(ThreatModel(parse_shifts("grid:2"), mode="zero"), batch_size=64, early_exit=False),
    lambda: RandomAttack(ThreatModel(parse_shifts("random:2:8"), mode="zero"), batch_size=64),
])
def test_api_refuses_flipping_model(make):
    ns = _models()
    x = _float(_images())
    net = ns["flips"]()
    with torch.no_grad():
        y = net(x).argmax(1)
    with pytest.raises(VerificationError, match="depends on the batch") as info:
        make()(net, x, y, device="cpu")
    assert 0 <= info.value.image < N


@pytest.mark.parametrize("method", ["grid", "gradient"])
def test_api_refuses_batch_mean_model(method):
    ns = _models()
    x = _float(_images())
    net = ns["batch_mean"]()
    with torch.no_grad():
        y = net(x).argmax(1)
    with pytest.raises(VerificationError, match=r"disagree for image \d+ at shift"):
        attack(net, x, y, shifts="grid:2", mode="zero", method=method, batch_size=64, device="cpu")


def test_image_index_is_that_of_the_images_given():
    """The search hook sees only the images correct unshifted; the message names the caller's index."""
    ns = _models()
    x = _float(_images())
    net = ns["flips"]()
    with torch.no_grad():
        y = net(x).argmax(1)
    y[:5] = (y[:5] + 1) % 4  # wrong unshifted: not searched, so the hook's numbering is shifted by 5
    with pytest.raises(VerificationError) as info:
        GridAttack(ThreatModel(parse_shifts("grid:2"), mode="zero"), batch_size=64)(net, x, y, device="cpu")
    i = info.value.image
    assert i >= 5 and f"for image {i} at" in str(info.value)
    shift = info.value.detail[0]
    with torch.no_grad():  # alone, that image is correct at that shift; in the search batch it was not
        view = torch.nn.functional.pad(x[i : i + 1], (2, 2, 2, 2))
        dx, dy = int(shift[0]), int(shift[1])
        view = view[..., 2 - dy : 2 - dy + 16, 2 - dx : 2 - dx + 16]
        assert int(net(view).argmax(1)) == int(y[i])


def test_gradient_attack_with_a_consistent_model_is_unaffected():
    """A model that does not depend on the batch (batches of at most N here) raises nothing."""
    ns = _models()
    x = _float(_images())
    net = ns["flips"]()
    with torch.no_grad():
        y = net(x).argmax(1)
    threat = ThreatModel(parse_shifts("grid:2"), mode="zero")
    result = GradientAttack(threat, batch_size=N)(net, x, y, device="cpu")
    assert not bool((result.robust & (result.worst_margin < 0)).any())


@pytest.mark.parametrize("command", ["attack", "certify"])
def test_the_message_names_the_image_by_its_index_in_the_data(env, capsys, command):
    """In a later chunk the error names the dataset index, not the position in the chunk."""
    data = np.load(env / "flips.npz")
    y = data["y"].copy()
    y[:8] = (y[:8] + 1) % 4  # the first chunk is wrong unshifted: nothing there is searched
    np.savez(env / "flips.npz", x=data["x"], y=y)
    extra = ["--chunk-size", "8"] + (["--method", "exact"] if command == "certify" else [])
    assert main(_argv(env, command, "flips", "grid:2", *extra)) == 2
    err = capsys.readouterr().err
    index = int(err.split("disagree for image ")[1].split()[0])
    assert 8 <= index < 16, err
