"""A small, deterministic supervised training loop (SGD, cosine schedule, flip + crop).

Enough to train the CIFAR-size models that tests, benchmarks and the CPU tier of
the experiments need; it is not a general training framework.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import ShapeError, check_images

__all__ = ["train_classifier", "evaluate_accuracy"]


def _augment(x: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Random horizontal flip and random crop from a reflect-padded canvas (per image)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if pad == 0:
        return x
    canvas = F.pad(x, (pad,) * 4, mode="reflect")
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (top[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    cols = (left[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
    return canvas.gather(2, rows).gather(3, cols)


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 0.05,
    weight_decay: float = 5e-4,
    augment_pad: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """Train ``model`` in place with SGD (momentum 0.9, one-cycle cosine) and return it in eval mode.

    Args:
        model: a classifier mapping (N, C, H, W) in [0, 1] to logits.
        images: training images, float (N, C, H, W) in [0, 1].
        labels: (N,) int64.
        epochs: passes over the data.
        batch_size: images per step.
        lr: peak learning rate.
        weight_decay: L2 penalty.
        augment_pad: random-crop padding in pixels (0 disables crops; flips always on).
        seed: seeds the shuffling, the augmentation and the weights' gradients order.
        progress: show a progress bar.
    """
    check_images(images)
    if labels.shape != (images.shape[0],):
        raise ShapeError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    steps = epochs * math.ceil(images.shape[0] / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    model.train()
    bar = tqdm(total=steps, disable=not progress, leave=False, desc="training")
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=gen)
        for s in range(0, images.shape[0], batch_size):
            idx = order[s : s + batch_size]
            x = _augment(images[idx], augment_pad, gen)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return model.eval()


@torch.inference_mode()
def evaluate_accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on (N, C, H, W) images, as a fraction."""
    model.eval()
    correct = 0
    for s in range(0, images.shape[0], batch_size):
        correct += int((model(images[s : s + batch_size]).argmax(1) == labels[s : s + batch_size]).sum())
    return correct / max(images.shape[0], 1)
