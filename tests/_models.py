"""Small deterministic test models whose predictions depend on position."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def position_sensitive_cnn(size: int = 12, classes: int = 4, seed: int = 0,
                           dtype: torch.dtype = torch.float64) -> nn.Module:
    """conv -> ReLU -> max-pool -> flatten -> linear: not shift invariant, varied predictions."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(6 * (size // 2) ** 2, classes),
    )
    return model.to(dtype).eval()


def make_problem(n: int = 24, size: int = 12, classes: int = 4, seed: int = 2,
                 dtype: torch.dtype = torch.float64):
    """Smooth images, labels and a model: most labels equal the clean prediction, some do not.

    With the default seed some images survive every shift of grid:2 and some do not.
    """
    model = position_sensitive_cnn(size, classes, seed, dtype)
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=gen, dtype=dtype)
    x = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    with torch.no_grad():
        pred = model(x).argmax(1)
    wrong = torch.randint(0, classes, (n,), generator=gen)
    y = torch.where(torch.arange(n) % 5 == 4, wrong, pred)
    return model, x, y


class LiarModel(nn.Module):
    """Wraps a model and returns a wrong class on calls number ``lie_from`` .. ``lie_to``.

    Used to check that no attack reports a failure that a separate forward pass
    does not confirm.
    """

    def __init__(self, model: nn.Module, lie_from: int = 1, lie_to: int = 3) -> None:
        super().__init__()
        self.model, self.lie_from, self.lie_to, self.calls = model, lie_from, lie_to, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        self.calls += 1
        if self.lie_from <= self.calls <= self.lie_to:
            z = z.roll(1, dims=1)  # every prediction moves to another class
        return z


#: Source of a module for ``--model models.py:linear`` in command-line tests: a seeded linear map of
#: (N, 3, 16, 16) images to 4 classes. Test files append their own subclasses of ``Linear``.
LINEAR_SOURCE = '''
import torch
from torch import nn


class Linear(nn.Module):
    """(N, 3, 16, 16) -> 4 classes; deterministic weights."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 16 * 16, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


def linear():
    return Linear().eval()
'''


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with its weights moved off their initialisation and random BatchNorm
    statistics, so that a wrong layer, order or normalisation changes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    return model.eval()
