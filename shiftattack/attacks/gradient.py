"""First-order attack: gradient ascent on continuous (dx, dy[, angle]) with restarts."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack._progress import tqdm
from shiftattack.attacks.base import Attack, Search
from shiftattack.runtime.engine import ModelRunner, margins
from shiftattack.shifts.threats import ThreatModel

__all__ = ["GradientAttack"]


class GradientAttack(Attack):
    """Signed-gradient ascent of the cross-entropy over the shift parameters.

    The parameters ``(dx, dy)`` (and ``angle`` when the set rotates) live in the
    box of the threat set (``|dx|, |dy| <= radius``, ``|angle| <= max_angle``).
    The image is shifted differentiably: bilinear interpolation between exact
    integer shifts (or the Fourier shift, or rotation sampling) — for an exact
    (integer) threat model this is the continuous relaxation. Each iterate is
    *evaluated* (and can only be reported) at its projection onto the declared
    set, :meth:`~shiftattack.shifts.threats.ThreatModel.project`: the nearest member of a
    ``grid:``, ``list:`` or ``rt:`` set, the box point (whole pixels for exact
    threats) of a ``random:`` set. Each step moves every parameter by ``step``
    times the sign of its gradient and clamps it into the box; restart 0 starts
    at the identity, later restarts uniformly in the box.

    Engstrom et al. (ICML 2019) found first-order methods much weaker than grid
    search on this low-dimensional, non-concave landscape; ``benchmarks/`` and
    the docs measure the gap. ``robust`` means only "not fooled by this search".

    Args:
        threat: any threat model (the set's radius and angle range define the box).
        batch_size: images per optimisation batch.
        steps: gradient steps per restart.
        restarts: number of starts.
        step_size: step in pixels (default ``radius / 4``); the angle moves by
            ``step_size / radius * max_angle`` degrees.
        seed: seed of the random restarts.
    """

    name = "gradient"

    def __init__(self, threat: ThreatModel, *, batch_size: int = 256, steps: int = 10,
                 restarts: int = 3, step_size: float | None = None, seed: int = 0) -> None:
        super().__init__(threat, batch_size=batch_size)
        if steps < 1 or restarts < 1:
            raise ValueError("steps and restarts must be >= 1")
        self.steps, self.restarts, self.seed = steps, restarts, seed
        r = max(threat.shifts.radius, 1e-12)
        self.step_size = step_size if step_size is not None else r / 4
        self.scale = torch.tensor([r, r, threat.shifts.max_angle], dtype=torch.float64)
        relax = "bilinear" if threat.interpolation == "exact" else threat.interpolation
        self.relaxed = dataclasses.replace(threat, interpolation=relax)

    def describe(self) -> dict:
        return {"batch_size": self.batch_size, "steps": self.steps, "restarts": self.restarts,
                "step_size_px": self.step_size, "seed": self.seed}

    def search(self, runner: ModelRunner, images: Tensor, labels: Tensor, clean_margin: Tensor,
               progress: bool) -> Search:
        n = images.shape[0]
        gen = torch.Generator().manual_seed(self.seed)
        starts = [torch.zeros(n, 3, dtype=torch.float64)] + [
            (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1) * self.scale
            for _ in range(self.restarts - 1)]
        out = Search(fooled=torch.zeros(n, dtype=torch.bool), params=torch.zeros(n, 3, dtype=torch.float64),
                     margin=clean_margin.double().clone(), n_evaluated=torch.zeros(n, dtype=torch.long))
        best_loss = torch.full((n,), -torch.inf, dtype=torch.float64)
        batches = range(0, n, self.batch_size)
        for s in tqdm(batches, disable=not progress, leave=False, desc="gradient attack"):
            idx = torch.arange(s, min(s + self.batch_size, n))
            for start in starts:
                self._ascend(runner, images, labels, idx, start[idx].clone(), out, best_loss)
        return out

    def _ascend(self, runner, images, labels, idx, p, out: Search, best_loss) -> None:
        dev = images.device
        step = (self.step_size / max(self.threat.shifts.radius, 1e-12)) * self.scale
        for _ in range(self.steps + 1):
            live = ~out.fooled[idx]  # early exit: fooled images stop
            if not bool(live.any()):
                return
            ii, pp = idx[live], p[live]
            x, lab = images[ii.to(dev)], labels[ii.to(dev)]
            self._record(runner, x, lab, ii, pp, out, best_loss)
            q = pp.to(dev, x.dtype).clone().requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(runner.forward(self.relaxed.apply(x, q)), lab, reduction="sum")
                # a piecewise-constant model gives no gradient: the iterate then stays put
                grad = torch.autograd.grad(loss, q)[0] if loss.requires_grad else torch.zeros_like(q)
            p[live] = torch.maximum(torch.minimum(pp + step * grad.sign().double().cpu(), self.scale),
                                    -self.scale)

    def _record(self, runner, x, lab, ii, params, out: Search, best_loss) -> None:
        """Evaluate the members nearest the iterates ``params`` (B, 3); keep the worst per image."""
        cand = self.threat.project(params)
        logits = runner(self.threat.apply(x, cand.to(x.device)))
        marg = margins(logits, lab).double().cpu()
        loss = F.cross_entropy(logits, lab, reduction="none").double().cpu()
        out.n_evaluated[ii] += 1
        wrong = (logits.argmax(1) != lab).cpu()  # the prediction, as the re-verification judges it
        newly = wrong & ~out.fooled[ii]
        better_fool = wrong & out.fooled[ii] & (loss > best_loss[ii])
        lower = ~wrong & ~out.fooled[ii] & (marg < out.margin[ii])
        take = newly | better_fool | lower
        t = ii[take]
        out.params[t] = cand[take]
        out.margin[t] = marg[take]
        best_loss[t] = loss[take]
        out.fooled[ii[wrong]] = True
