"""Independent brute-force references for the attack tests (NumPy slicing, plain loops).

Nothing here uses ``shiftattack.shifts``: shifted images are built with
``numpy.pad`` and slicing, one image and one shift at a time.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_NP_MODE = {"circular": "wrap", "zero": "constant", "reflect": "reflect", "replicate": "edge"}


def np_shift(img: np.ndarray, dx: int, dy: int, mode: str) -> np.ndarray:
    """Shift one (C, H, W) image by whole pixels: pad by K, take the window at (K - dy, K - dx)."""
    _, h, w = img.shape
    k = max(abs(dx), abs(dy), 1)
    padded = np.pad(img, ((0, 0), (k, k), (k, k)), mode=_NP_MODE[mode])
    return padded[:, k - dy : k - dy + h, k - dx : k - dx + w]


def np_crop(canvas: np.ndarray, dx: int, dy: int, size: tuple[int, int]) -> np.ndarray:
    """The (h, w) window of a (C, Hs, Ws) canvas for a content shift (dx, dy)."""
    _, hs, ws = canvas.shape
    h, w = size
    top, left = (hs - h) // 2 - dy, (ws - w) // 2 - dx
    assert top >= 0 and left >= 0 and top + h <= hs and left + w <= ws
    return canvas[:, top : top + h, left : left + w]


def margin_of(model: nn.Module, img: np.ndarray, label: int) -> float:
    """Logit margin of one image, evaluated alone."""
    with torch.no_grad():
        z = model(torch.from_numpy(np.ascontiguousarray(img))[None])[0].double()
    others = torch.cat([z[:label], z[label + 1 :]])
    return float(z[label] - others.max())


def pred_of(model: nn.Module, img: np.ndarray) -> int:
    with torch.no_grad():
        return int(model(torch.from_numpy(np.ascontiguousarray(img))[None])[0].argmax())


def brute_grid(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int, mode: str,
               crop_size: tuple[int, int] | None = None) -> dict:
    """Every image x every integer shift with |dx|, |dy| <= k, by a double loop.

    Returns per image: ``robust`` (correct under every shift, identity included),
    ``min_margin``, ``margins`` {(dx, dy): margin} and ``fool_radius`` (smallest
    Chebyshev radius with a misclassification, inf if none).
    """
    out = {"robust": [], "min_margin": [], "margins": [], "fool_radius": []}
    for img_t, label in zip(images, labels.tolist(), strict=True):
        img = img_t.numpy()
        marg, radius, robust = {}, float("inf"), True
        for dy in range(-k, k + 1):
            for dx in range(-k, k + 1):
                view = np_crop(img, dx, dy, crop_size) if mode == "crop" else np_shift(img, dx, dy, mode)
                marg[(dx, dy)] = margin_of(model, view, label)
                if pred_of(model, view) != label:
                    robust = False
                    radius = min(radius, max(abs(dx), abs(dy)))
        out["robust"].append(robust)
        out["min_margin"].append(min(marg.values()))
        out["margins"].append(marg)
        out["fool_radius"].append(radius)
    return out
