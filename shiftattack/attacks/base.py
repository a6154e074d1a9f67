"""The attack base class and its result type.

An attack is a small class with keyword-only hyper-parameters and one search
hook, :meth:`Attack.search` (foolbox 3's shape). :meth:`Attack.__call__`
validates the inputs, runs the clean pass, calls the hook on the images that
are correct unshifted, and then checks the outcome before it is reported: every
reported shift is a member of the declared set (or the identity), and **every
adversarial shift, and every surviving image at its worst shift, is re-run in a
separate forward pass**. A disagreement with the search is an error
(:class:`VerificationError`), never a result. An image misclassified unshifted
is fooled at (0, 0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from shiftattack.errors import NonFiniteLogits, ShapeError, ShiftAttackError, check_images
from shiftattack.runtime.engine import ModelRunner, margins
from shiftattack.runtime.precision import describe as describe_precision
from shiftattack.shifts.threats import ThreatModel

__all__ = ["Attack", "AttackResult", "MembershipError", "Search", "VerificationError", "batch_dependence"]


class VerificationError(ShiftAttackError, RuntimeError):
    """The search and a separate forward pass disagree about an image (the model depends on the batch).

    Attributes:
        image: position of the image in the images given to the attack (None if unknown).
    """

    def __init__(self, message: str, image: int | None = None, detail: tuple = ()) -> None:
        super().__init__(message)
        self.image, self.detail = image, detail

    def renumbered(self, offset: int, indices: Tensor) -> VerificationError:
        """The same error naming the image by its index in the data: ``indices[offset + image]``."""
        if self.image is None or len(self.detail) != 3:
            return self
        return batch_dependence(int(indices[offset + self.image]), *self.detail)


class MembershipError(ShiftAttackError, RuntimeError):
    """Internal error: an attack was about to report a shift outside its declared set."""


def batch_dependence(image: int, params: Tensor, search_margin: float,
                     separate_margin: float) -> VerificationError:
    """The error for image ``image`` whose verdict at ``params`` (dx, dy, angle) differs between passes."""
    shift = [round(float(v), 6) for v in params.tolist()]
    return VerificationError(
        f"the model's output depends on the batch: the search pass and a separate forward pass disagree "
        f"for image {image} at shift {shift} (logit margin {search_margin:.6g} in the search, "
        f"{separate_margin:.6g} in the separate pass), so no result can be trusted; put the model in "
        "eval mode (model.eval()), or run with --batch-size 1 (batch_size=1)",
        image, (params, search_margin, separate_margin))


@dataclass
class Search:
    """What a search hook returns for the images it was given (n of them).

    Attributes:
        fooled: bool (n,), a misclassifying member was found.
        params: float64 (n, 3), the worst member ``(dx, dy, angle)``.
        margin: float (n,), the logit margin at ``params``.
        n_evaluated: int64 (n,), forward passes spent on each image.
        fooled_radius: float64 (n,), the smallest Chebyshev radius at which the
            image was fooled (``inf`` if never); ``None`` when the search order
            does not determine it.
        verified: bool (n,), failures already confirmed by a separate forward
            pass at ``params`` (with ``margin`` from that pass); the base class
            re-verifies every other failure. ``None``: none confirmed.
    """

    fooled: Tensor
    params: Tensor
    margin: Tensor
    n_evaluated: Tensor
    fooled_radius: Tensor | None = None
    verified: Tensor | None = None


@dataclass
class AttackResult:
    """Per-image outcome of an attack (all tensors on the CPU, length N).

    ``robust[i]`` is True when no member of the set that the attack evaluated
    fools image i; for an exhaustive (``exact``) attack this is a proof over the
    whole set. ``worst_shift`` is ``(dx, dy)`` or ``(dx, dy, angle)`` in pixels and
    degrees; ``worst_margin`` the logit margin there (re-verified for fooled images).
    ``precision`` says which model the claim is about (:func:`~shiftattack.runtime.precision.describe`:
    ``name`` fp32, bf16 or fp16, the autocast dtype and device type). ``n_reverified`` counts the
    inputs of the separate re-verification pass (forward passes not in ``n_evaluated``; None when
    not known, e.g. merged from chunks stored by an older version).
    """

    attack: str
    threat: ThreatModel
    labels: Tensor
    clean_pred: Tensor
    robust: Tensor
    worst_params: Tensor
    worst_margin: Tensor
    n_evaluated: Tensor
    fooled_radius: Tensor | None
    exact: bool
    seconds: float
    info: dict = field(default_factory=dict)
    precision: dict = field(default_factory=lambda: describe_precision("fp32", torch.device("cpu")))
    n_reverified: int | None = 0

    @property
    def n_images(self) -> int:
        return int(self.labels.numel())

    @property
    def clean_accuracy(self) -> float:
        return float((self.clean_pred == self.labels).double().mean()) if self.n_images else math.nan

    @property
    def worst_case_accuracy(self) -> float:
        return float(self.robust.double().mean()) if self.n_images else math.nan

    def accuracy_vs_radius(self) -> list[tuple[float, float]] | None:
        """Worst-case accuracy for every radius of the set, from this one pass.

        Returns ``[(K, accuracy), ...]`` for each distinct Chebyshev radius K of
        the members (0, 1, ..., Kmax for ``grid:Kmax``), or None when the search
        order did not determine each image's smallest fooling radius.
        """
        if self.fooled_radius is None or self.threat.shifts.kind == "random":
            return None
        radii = sorted(set(self.threat.shifts.params[:, :2].abs().amax(dim=1).tolist()) | {0.0})
        return [(k, float((self.fooled_radius > k).double().mean())) for k in radii]

    def shift_list(self, i: int) -> list[float | int]:
        row = self.worst_params[i].tolist()
        values = row if self.threat.shifts.has_rotation else row[:2]
        return [int(v) if float(v).is_integer() and self.threat.exact else float(v) for v in values]

    def image_records(self, indices: Tensor | None = None) -> list[dict]:
        """Per-image dicts with the contract keys (DESIGN.md ``results.json``)."""
        idx = indices if indices is not None else torch.arange(self.n_images)
        return [
            {
                "index": int(idx[i]),
                "label": int(self.labels[i]),
                "clean_pred": int(self.clean_pred[i]),
                "robust": bool(self.robust[i]),
                "worst_shift": self.shift_list(i),
                "worst_margin": float(self.worst_margin[i]),
                "n_evaluated": int(self.n_evaluated[i]),
            }
            for i in range(self.n_images)
        ]

    def to_json(self, indices: Tensor | None = None) -> dict:
        """The ``results.json`` document: aggregate numbers, threat, per-image records.

        No wall-clock time goes in (it is :attr:`seconds`), so equal inputs give equal documents.
        """
        curve = self.accuracy_vs_radius()
        return {
            "clean_accuracy": self.clean_accuracy,
            "worst_case_accuracy": self.worst_case_accuracy,
            "n_images": self.n_images,
            "threat": self.threat.to_json(),
            "attack": {"name": self.attack, "exact": self.exact, **self.info},
            "accuracy_vs_radius": None if curve is None else [
                {"radius": k, "worst_case_accuracy": a} for k, a in curve],
            "n_evaluated": int(self.n_evaluated.sum()),
            "n_reverified": self.n_reverified,
            "precision": self.precision,
            "images": self.image_records(indices),
        }


class Attack:
    """Base class: validation, clean pass, search hook, re-verification.

    Args:
        threat: the :class:`~shiftattack.shifts.threats.ThreatModel` to search.
        batch_size: (image, shift) pairs per forward pass.
    """

    name = "attack"
    #: True when a surviving image is proven robust over the whole set.
    exact = False

    def __init__(self, threat: ThreatModel, *, batch_size: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.threat = threat
        self.batch_size = batch_size

    def search(self, runner: ModelRunner, images: Tensor, labels: Tensor, clean_margin: Tensor,
               progress: bool) -> Search:
        """Hook: search the threat set for the given images, all correct unshifted.

        Args:
            runner: the model.
            images: (n, C, H, W) on the runner's device.
            labels: (n,) int64 on the runner's device.
            clean_margin: (n,) float64 CPU margins at the identity (already counted
                in ``n_evaluated``).
            progress: show a progress bar.
        """
        raise NotImplementedError

    def __call__(
        self,
        model: Callable[[Tensor], Tensor] | ModelRunner,
        images: Tensor,
        labels: Tensor,
        *,
        device: str | torch.device = "auto",
        progress: bool = False,
        precision: str = "fp32",
    ) -> AttackResult:
        """Attack ``model`` on ``images`` (N, C, H, W) in [0, 1] with ``labels`` (N,).

        In crop mode ``images`` are the canvases and the model sees
        ``threat.crop_size`` windows. ``precision`` (fp32, bf16, fp16) runs the model under
        autocast (a :class:`ModelRunner` given as ``model`` brings its own). Returns an
        :class:`AttackResult` on the CPU.
        """
        start = time.perf_counter()
        check_images(images)
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise ShapeError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.threat.check_fits(images.shape[-2], images.shape[-1])
        if isinstance(model, ModelRunner):
            runner = model
        else:
            runner = ModelRunner(model, device, images.dtype, precision=precision)
        images = images.to(runner.device, runner.dtype)
        labels = labels.to(runner.device, torch.long)
        n = images.shape[0]
        identity = torch.zeros(n, 3, dtype=torch.float64)
        clean_logits = self._logits(runner, images, identity)
        runner.check_labels(labels, images)
        clean_pred = clean_logits.argmax(1)
        correct = clean_pred == labels
        found = Search(
            fooled=~correct.cpu(),
            params=identity.clone(),
            margin=margins(clean_logits, labels).cpu().double(),
            n_evaluated=torch.ones(n, dtype=torch.long),
            fooled_radius=torch.where(correct.cpu(), math.inf, 0.0).double(),
            verified=torch.zeros(n, dtype=torch.bool),
        )
        todo = correct.nonzero().squeeze(1)
        if todo.numel():
            t = todo.cpu()
            try:
                sub = self.search(runner, images[todo], labels[todo], found.margin[t], progress)
            except VerificationError as exc:  # the hook numbers its own images: say which image it was
                if exc.image is None or not exc.detail:
                    raise
                raise batch_dependence(int(t[exc.image]), *exc.detail) from None
            found.fooled[t] = sub.fooled
            found.params[t] = sub.params
            found.margin[t] = sub.margin.double()
            found.n_evaluated[t] += sub.n_evaluated
            if sub.fooled_radius is None:
                found.fooled_radius = None
            elif found.fooled_radius is not None:
                found.fooled_radius[t] = sub.fooled_radius.double()
            if sub.verified is not None:
                found.verified[t] = sub.verified & sub.fooled
        n_reverified = self._reverify(runner, images, labels, found)
        return AttackResult(
            attack=self.name, threat=self.threat, labels=labels.cpu(), clean_pred=clean_pred.cpu(),
            robust=~found.fooled, worst_params=found.params, worst_margin=found.margin,
            n_evaluated=found.n_evaluated, fooled_radius=found.fooled_radius,
            exact=self.exact, seconds=time.perf_counter() - start, info=self.describe(),
            precision=describe_precision(runner.precision, runner.device), n_reverified=n_reverified,
        )

    def describe(self) -> dict:
        """Hyper-parameters recorded in the results file."""
        return {"batch_size": self.batch_size}

    def _logits(self, runner: ModelRunner, images: Tensor, params: Tensor) -> Tensor:
        """Logits of ``apply(images[i], params[i])`` in batches: (N, K) on the device."""
        out = []
        for s in range(0, images.shape[0], self.batch_size):
            p = params[s : s + self.batch_size].to(runner.device)
            index = torch.arange(s, min(s + self.batch_size, images.shape[0]), device=images.device)
            try:
                out.append(runner(self.threat.apply_to(images, index, p)))
            except NonFiniteLogits as exc:  # name the image and the shift, not a row of a batch
                raise exc.at(s + exc.row, p[exc.row]) from None
        if not out:
            return torch.zeros(0, runner.num_classes or 1, device=runner.device)
        return torch.cat(out)

    def _is_member(self, params: Tensor, size: tuple[int, int]) -> Tensor:
        """bool (B,): rows ``(dx, dy, angle)`` this attack may report for (h, w) = ``size`` images.

        The members of the declared set, and the identity (the clean pass evaluates it for
        every image, and an image wrong unshifted is fooled there).
        """
        return self.threat.contains(params) | (params == 0).all(dim=1)

    def _reverify(self, runner: ModelRunner, images: Tensor, labels: Tensor, found: Search) -> int:
        """Check the outcome before it is reported; raise rather than report what does not hold.

        Returns the number of inputs re-run in the separate pass.

        1. Every ``found.params`` row (fooled and surviving images) is a member of the set
           (:meth:`_is_member`), else :class:`MembershipError`.
        2. In a separate forward pass, every failure not yet confirmed is re-run (its margin
           then comes from that pass), and every surviving image is re-run at its worst
           shift, both in the same batches (:attr:`AttackResult.n_reverified` counts them).
           A failure not confirmed, or a survivor misclassified there, raises
           :class:`VerificationError` (the model depends on the batch): an unconfirmed
           failure never leaves an image counted robust.
        3. No surviving image has a negative margin.
        """
        member = self._is_member(found.params, tuple(images.shape[-2:]))
        if not bool(member.all()):
            i = int((~member).nonzero()[0])
            raise MembershipError(
                f"internal error: the {self.name} attack was about to report shift "
                f"{found.params[i].tolist()} for image {i}, which is not a member of "
                f"{self.threat.shifts.spec}; no result was written (please report this bug)")
        verified = torch.zeros_like(found.fooled) if found.verified is None else found.verified
        # failures not yet confirmed and every survivor, in one set of full batches
        idx = ((found.fooled & ~verified) | ~found.fooled).nonzero().squeeze(1)
        if idx.numel():
            logits = self._logits(runner, images[idx.to(images.device)], found.params[idx])
            lab = labels[idx.to(labels.device)]
            marg = margins(logits, lab).cpu().double()
            expected = found.fooled[idx]
            disagree = (logits.argmax(1) != lab).cpu() != expected
            # name a failure the separate pass does not confirm first, then a survivor it fools
            for fooled in (True, False):
                bad = (disagree & (expected == fooled)).nonzero().squeeze(1)
                if bad.numel():
                    j = int(bad[0])
                    i = int(idx[j])
                    raise batch_dependence(i, found.params[i], float(found.margin[i]), float(marg[j]))
            found.margin[idx[expected]] = marg[expected]  # a failure's margin: the separate pass's
        negative = (~found.fooled & (found.margin < 0)).nonzero().squeeze(1)
        if negative.numel():
            i = int(negative[0])
            raise VerificationError(
                f"internal error: image {i} would be reported robust with a negative margin "
                f"{float(found.margin[i]):.6g} at {found.params[i].tolist()}; no result was written", i)
        return int(idx.numel())
