"""foolbox 3 interoperability, both ways.

* :class:`FoolboxSpatialAttack` runs foolbox's own ``SpatialAttack`` (grid search)
  and reports it in our :class:`~shiftattack.attacks.AttackResult` schema, for
  side-by-side comparisons. foolbox samples with ``grid_sample(align_corners=True)``
  and a translation normalised by half the image size, so a requested
  translation ``t`` moves the content by ``-t (n - 1) / n`` pixels in our sign
  convention (3 px on 32 px is really 2.906 px, to the left): its "integer"
  shifts are sub-pixel and blur the image. We report the effective shift in our
  convention and re-verify each adversarial image with foolbox's own transform.
  foolbox keeps no margins, so for a surviving image ``worst_shift`` is the
  identity and ``worst_margin`` the clean margin (not a searched minimum).
* :class:`GridShiftAttack` exposes our exact grid attack with foolbox's calling
  convention, ``attack(fmodel, inputs, criterion) -> (raw, clipped, success)``,
  for a ``foolbox.PyTorchModel`` (or any callable model).

foolbox is an optional dependency (``pip install shiftattack[foolbox]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from shiftattack.attacks.base import Attack, AttackResult, Search
from shiftattack.attacks.grid import GridAttack
from shiftattack.errors import ShiftAttackError, SpecError
from shiftattack.runtime.engine import ModelRunner
from shiftattack.runtime.precision import autocast
from shiftattack.shifts.threats import ThreatModel, parse_shifts

__all__ = ["FoolboxSpatialAttack", "GridShiftAttack", "foolbox_translation_to_shift"]


def _foolbox():
    """(foolbox, its rotate_and_shift, eagerpy), or SpecError naming the extra to install."""
    try:
        import eagerpy
        import foolbox
        from foolbox.attacks.spatial_attack_transformations import rotate_and_shift
    except ImportError as exc:
        raise SpecError(f"--attack foolbox needs foolbox and eagerpy ({exc.name or exc} is missing); install "
                        "them with: pip install 'shiftattack[foolbox]'") from None
    return foolbox, rotate_and_shift, eagerpy


def foolbox_translation_to_shift(t: float, size: int) -> float:
    """Effective content shift (our convention, pixels) of a foolbox translation ``t``."""
    return -t * (size - 1) / size


@dataclasses.dataclass(frozen=True)
class _FoolboxTransform(ThreatModel):
    """foolbox's rotate-and-shift, parametrised by our (dx, dy, angle) convention."""

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        _, rotate_and_shift, ep = _foolbox()
        h, w = x.shape[-2:]
        out = torch.empty_like(x)
        for row in params.unique(dim=0):
            sel = (params == row).all(dim=1)
            dx, dy, angle = row.tolist()
            t = (-dx * w / (w - 1), -dy * h / (h - 1))
            out[sel] = rotate_and_shift(ep.astensor(x[sel]), translation=t, rotation=angle).raw
        return out


class FoolboxSpatialAttack(Attack):
    """foolbox 3 ``SpatialAttack`` (grid search) behind our API and results schema.

    Args:
        max_translation: foolbox's ``max_translation`` (requested pixels).
        num_translations: grid points per axis.
        max_rotation: degrees.
        num_rotations: rotation grid points.
        batch_size: images per foolbox call.
    """

    name = "foolbox_spatial"

    def __init__(self, *, max_translation: float = 3, num_translations: int = 7,
                 max_rotation: float = 0, num_rotations: int = 1, batch_size: int = 256) -> None:
        _foolbox()  # a missing extra is named now, before any output is written
        spec = f"rt:{max_translation}:{max_rotation}:{num_translations}:{num_rotations}"
        threat = _FoolboxTransform(parse_shifts(spec), mode="zero", interpolation="bilinear")
        super().__init__(threat, batch_size=batch_size)
        self.kwargs = dict(max_translation=max_translation, num_translations=num_translations,
                           max_rotation=max_rotation, num_rotations=num_rotations, grid_search=True)

    def describe(self) -> dict:
        return {"batch_size": self.batch_size, "foolbox": self.kwargs,
                "note": "effective shift = -requested * (n - 1) / n (align_corners=True)"}

    def search(self, runner: ModelRunner, images: Tensor, labels: Tensor, clean_margin: Tensor,
               progress: bool) -> Search:
        fb, rotate_and_shift, ep = _foolbox()

        model = runner.model
        if not isinstance(model, torch.nn.Module):
            raise ShiftAttackError("FoolboxSpatialAttack needs a torch.nn.Module model")
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=runner.device)
        attack = fb.attacks.SpatialAttack(**self.kwargs)
        n, (h, w) = images.shape[0], images.shape[-2:]
        fooled = torch.zeros(n, dtype=torch.bool)
        params = torch.zeros(n, 3, dtype=torch.float64)
        members = self._foolbox_order(h, w)
        for s in range(0, n, self.batch_size):
            x, lab = images[s : s + self.batch_size], labels[s : s + self.batch_size]
            with autocast(runner.precision, runner.device):  # the model at the run's precision
                xp, _, success = attack(fmodel, x, fb.criteria.Misclassification(lab))
            idx = success.nonzero().squeeze(1)
            fooled[s + idx.cpu()] = True
            # recover which grid member foolbox kept: the first whose transform matches
            for t, ours in members:
                if not idx.numel():
                    break
                cand = rotate_and_shift(ep.astensor(x[idx]), translation=t[:2], rotation=t[2]).raw
                match = (cand == xp[idx]).flatten(1).all(dim=1)
                params[s + idx[match].cpu()] = ours
                idx = idx[~match]
        margin = clean_margin.double().clone()
        return Search(fooled=fooled, params=params, margin=margin,
                      n_evaluated=torch.full((n,), len(members), dtype=torch.long), fooled_radius=None)

    def _is_member(self, params: Tensor, size: tuple[int, int]) -> Tensor:
        """bool (B,): rows that are the effective shift of one of foolbox's grid members, or the identity."""
        table = torch.stack([ours for _, ours in self._foolbox_order(*size)])
        near = (params[:, None, :] - table[None]).abs().amax(dim=-1).amin(dim=1) <= 1e-9
        return near | (params == 0).all(dim=1)

    def _foolbox_order(self, h: int, w: int) -> list[tuple[tuple[float, float, float], Tensor]]:
        """foolbox's grid in its own loop order, with our-convention equivalents."""
        k = self.kwargs
        # numpy's linspace, as foolbox uses, so the recovered transforms match bit for bit
        rots = np.linspace(-k["max_rotation"], k["max_rotation"], k["num_rotations"]).tolist()
        ts = np.linspace(-k["max_translation"], k["max_translation"], k["num_translations"]).tolist()
        out = []
        for phi in rots:
            for tx in ts:
                for ty in ts:
                    ours = torch.tensor([foolbox_translation_to_shift(tx, w),
                                         foolbox_translation_to_shift(ty, h), phi], dtype=torch.float64)
                    out.append(((tx, ty, phi), ours))
        return out


class GridShiftAttack:
    """Our exact grid attack with foolbox 3's calling convention.

    Example::

        fmodel = foolbox.PyTorchModel(net, bounds=(0, 1))
        attack = GridShiftAttack("grid:3", mode="zero")
        raw, clipped, success = attack(fmodel, images, labels)

    ``criterion`` may be a label tensor (N,) or a ``foolbox.criteria.Misclassification``.
    ``raw`` and ``clipped`` are the same tensor: an exact shift of an image in
    [0, 1] stays in [0, 1], so clipping changes nothing. ``success`` is True
    where a shift in the set fools the model (verified). The full
    :class:`AttackResult` of the last call is kept in ``last_result``.
    """

    def __init__(self, shifts: str = "grid:3", *, mode: str = "zero", interpolation: str = "exact",
                 batch_size: int = 256, early_exit: bool = True) -> None:
        self.attack = GridAttack(ThreatModel(parse_shifts(shifts), mode=mode, interpolation=interpolation),
                                 batch_size=batch_size, early_exit=early_exit)
        self.last_result: AttackResult | None = None

    def __call__(self, model: Any, inputs: Tensor, criterion: Any, *, epsilons: Any = None,
                 **kwargs: Any) -> tuple[Tensor, Tensor, Tensor]:
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(kwargs)}")
        if epsilons is not None:
            raise ShiftAttackError("a shift attack has no epsilons; the shift set is its budget")
        labels = getattr(criterion, "labels", criterion)
        labels = getattr(labels, "raw", labels)
        bounds = getattr(model, "bounds", (0, 1))
        if tuple(bounds) != (0, 1):
            raise ShiftAttackError(f"the model's bounds must be (0, 1), got {tuple(bounds)}")
        device = inputs.device
        result = self.attack(model, inputs, labels, device=device)
        self.last_result = result
        adv = self.attack.threat.apply(inputs, result.worst_params.to(device))
        success = (~result.robust).to(device)
        return adv, adv, success

