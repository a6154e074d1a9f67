"""Random worst-of-k attack (Engstrom et al., ICML 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack._progress import tqdm
from shiftattack.attacks.base import Attack, Search
from shiftattack.errors import SpecError
from shiftattack.runtime.engine import ModelRunner, margins
from shiftattack.shifts.threats import ThreatModel

__all__ = ["RandomAttack"]


class RandomAttack(Attack):
    """Draw ``k`` members per image uniformly from the box; keep the worst.

    Among the draws that misclassify, the one with the highest cross-entropy
    loss is kept (Engstrom et al.'s rule); an image with no misclassifying draw
    reports its minimum-margin draw. Draws are integer for an exact threat
    model and real-valued otherwise (plus a rotation for ``random:K:N:DEG``).
    Not a proof of robustness: ``robust`` means "survived k draws". Every draw
    lies in the box (:meth:`~shiftattack.shifts.threats.ShiftSet.draw`); fixed sets are
    refused (their members are searched by the grid attack).

    Args:
        threat: a threat model whose set is ``random:K:N``.
        batch_size: (image, draw) pairs per forward pass.
        seed: seed of the draws (a ``torch.Generator`` on the CPU).
    """

    name = "random"

    def __init__(self, threat: ThreatModel, *, batch_size: int = 256, seed: int = 0) -> None:
        super().__init__(threat, batch_size=batch_size)
        if threat.shifts.kind != "random":
            raise SpecError(f"the random attack needs a random:K:N set, got {threat.shifts.spec}")
        self.seed = seed

    def describe(self) -> dict:
        return {"batch_size": self.batch_size, "seed": self.seed, "draws": self.threat.shifts.n_draws}

    def search(self, runner: ModelRunner, images: Tensor, labels: Tensor, clean_margin: Tensor,
               progress: bool) -> Search:
        n, k = images.shape[0], self.threat.shifts.n_draws
        gen = torch.Generator().manual_seed(self.seed)
        draws = self.threat.shifts.draw(n, integer=self.threat.exact, generator=gen)  # (n, k, 3)
        flat = draws.reshape(n * k, 3)
        image_idx = torch.arange(n).repeat_interleave(k)
        loss = torch.empty(n * k, dtype=torch.float64)
        marg = torch.empty(n * k, dtype=torch.float64)
        wrong = torch.empty(n * k, dtype=torch.bool)
        dev = images.device
        for s in tqdm(range(0, n * k, self.batch_size), disable=not progress, leave=False,
                      desc="random attack"):
            ii = image_idx[s : s + self.batch_size]
            logits = runner(self.threat.apply_to(images, ii.to(dev), flat[s : s + self.batch_size].to(dev)))
            lab = labels[ii.to(dev)]
            loss[s : s + len(ii)] = F.cross_entropy(logits, lab, reduction="none").double().cpu()
            marg[s : s + len(ii)] = margins(logits, lab).double().cpu()
            wrong[s : s + len(ii)] = (logits.argmax(1) != lab).cpu()  # ties count as the prediction says
        loss, marg, wrong = loss.view(n, k), marg.view(n, k), wrong.view(n, k)
        fooled = wrong.any(dim=1)
        pick = torch.where(fooled, loss.masked_fill(~wrong, -torch.inf).argmax(1), marg.argmin(1))
        rows = torch.arange(n)
        return Search(fooled=fooled, params=draws[rows, pick], margin=marg[rows, pick],
                      n_evaluated=torch.full((n,), k, dtype=torch.long), fooled_radius=None)
