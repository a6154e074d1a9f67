"""Corruption-benchmark metrics: CE / mCE / relative mCE (ImageNet-C), FP / mFR and T5D / mT5D (ImageNet-P).

Definitions follow ``reference/METRICS.md`` (sections "ImageNet-C" and
"ImageNet-P", Hendrycks & Dietterich, ICLR 2019) and the pairing rule of the
published evaluation scripts (``reference/CORRUPTIONS.md`` section 6, "How
difficulty is used in evaluation": ``ImageNet-P/test.py``, ``cifar-p-eval.py``).

Units: errors, flip probabilities and clean errors are fractions in [0, 1]
(the papers print them x100 as %). CE, relative CE, FR, T5D and their means are
ratios to a reference model (1 = as good as the reference; papers print them
x100 as %). An unnormalised top-5 distance uT5D is a mean number of rank steps
(0 to 18 per frame pair).

ImageNet-C (E(f, s, c) = top-1 error of model f at severity s of corruption c):

* CE_c(f) = sum_s E(f, s, c) / sum_s E(ref, s, c), s = 1..5;
* relative CE_c(f) = sum_s (E(f, s, c) - E_clean(f)) / sum_s (E(ref, s, c) - E_clean(ref));
* mCE, relative mCE: the mean over the 15 benchmark corruptions.

A reference known only through its severity-averaged errors (the published
AlexNet numbers) enters as sum_s E(ref, s, c) = 5 * mean error.

ImageNet-P (a sequence x_0 .. x_{T-1} of frames per image; frames are numbered
from 0 here, from 1 in the paper):

* noise perturbations (a name containing "noise") compare every frame j >= 1
  with the clean frame 0; the difficulty d (1, 2, 3) selects another data set
  (``<name>_d``), not another comparison;
* every other perturbation compares the frame pairs (j - d, j), j >= d: along
  all d chains of frames d apart (d = 1: consecutive frames);
* FP = the fraction of compared pairs whose top-1 differs; uT5D = the mean top-5
  distance d(pi_earlier, pi_later) over the same pairs; FR = FP(f) / FP(ref),
  T5D = uT5D(f) / uT5D(ref); mFR, mT5D: the means over the 10 test perturbations.

Every image of a benchmark has the same number of frames T, so the published
mean of per-image means equals the pooled fraction flips / pairs that
:func:`flip_counts` and :func:`t5d_sums` let a caller accumulate over batches.

Top-5 distance (paper Appendix C, as ``ImageNet-P/test.py`` computes it): for
rankings pi, pi' (class indices by decreasing score),
sigma(i) = 1 + (position of class pi(i) in pi'), and

    d = sum_{i=1..5} sum_{j=min(i, sigma(i))+1..max(i, sigma(i))} 1(1 <= j - 1 <= 5)
      = sum_{i=1..5} |min(i - 1, 5) - min(sigma(i) - 1, 5)|.

The paper writes sigma = pi^-1 pi' with pi the rank vector (class -> rank)
composed left to right; the script computes it as ``rank2[argsort(rank1)]``.
d depends only on the two top-5 lists. Ties in the logits rank the lower class
index first (SciPy's ``rankdata(method='ordinal')``, used by the script).

Examples:
    >>> import torch
    >>> preds = torch.tensor([[3, 3, 5, 5, 3]])
    >>> flip_counts(preds, noise=False)          # pairs (0,1) (1,2) (2,3) (3,4)
    (2, 4)
    >>> flip_counts(preds, noise=True)           # pairs (0,1) (0,2) (0,3) (0,4)
    (2, 4)
    >>> round(mce({"fog": 0.8, "snow": 0.6}, names=["fog", "snow"]), 6)
    0.7
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import torch
from torch import Tensor

from shiftattack.errors import ModelError, ShapeError, SpecError, check_shape

__all__ = [
    "ALEXNET",
    "ALEXNET_CLEAN_ERROR",
    "ALEXNET_C_ERRORS",
    "ALEXNET_P_FP",
    "ALEXNET_P_UT5D",
    "BENCHMARK_CORRUPTIONS",
    "BENCHMARK_PERTURBATIONS",
    "CIFAR_P_EVAL_PERTURBATIONS",
    "Reference",
    "ce",
    "corruption_errors",
    "flip_counts",
    "flip_probability",
    "fr",
    "is_noise_perturbation",
    "load_reference",
    "mce",
    "mfr",
    "mt5d",
    "relative_ce",
    "relative_mce",
    "t5d",
    "t5d_sums",
    "top5_distance",
    "top5_distance_from_logits",
    "unnormalized_t5d",
]

# ---------------------------------------------------------------------------------------------------------
# Published constants
# ---------------------------------------------------------------------------------------------------------

#: The 15 ImageNet-C benchmark corruptions (METRICS.md "ImageNet-C"), in the published order.
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)

#: The 10 ImageNet-P test perturbations (METRICS.md "ImageNet-P"; the ImageNet-P script's test set).
#: Note: ``cifar-p-eval.py`` averages over spatter instead of snow (CORRUPTIONS.md section 6), see
#: :data:`CIFAR_P_EVAL_PERTURBATIONS`.
BENCHMARK_PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "snow",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)

#: The 10 perturbations ``ImageNet-P/cifar-p-eval.py`` averages for CIFAR-10-P: spatter in place of snow.
CIFAR_P_EVAL_PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "spatter",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)

#: AlexNet top-1 error per ImageNet-C corruption, averaged over the 5 severities (fractions): the CE
#: normalisers. Source: reference/METRICS.md "ImageNet-C" (Hendrycks & Dietterich 2019; the 15
#: benchmark values are those of hendrycks/robustness, also copied as ``ALEXNET_ERR`` by AugMix).
ALEXNET_C_ERRORS: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
    # held-out (validation) corruptions: METRICS.md "Extras", given to 3 decimals
    "speckle_noise": 0.845,
    "gaussian_blur": 0.787,
    "spatter": 0.718,
    "saturate": 0.658,
}

#: AlexNet clean ImageNet top-1 error (fraction). Source: reference/METRICS.md "ImageNet-C".
ALEXNET_CLEAN_ERROR = 0.435

#: AlexNet flip probability per ImageNet-P perturbation (fractions; published as %, e.g. 23.65%).
#: Source: reference/METRICS.md "ImageNet-P" (Hendrycks & Dietterich 2019).
ALEXNET_P_FP: dict[str, float] = {
    "gaussian_noise": 0.2365,
    "shot_noise": 0.3006,
    "motion_blur": 0.0930,
    "zoom_blur": 0.0594,
    "snow": 0.1193,
    "brightness": 0.0489,
    "translate": 0.1101,
    "rotate": 0.1310,
    "tilt": 0.0705,
    "scale": 0.2353,
    # validation perturbations
    "speckle_noise": 0.1865,
    "gaussian_blur": 0.0278,
    "spatter": 0.0505,
    "shear": 0.1066,
}

#: AlexNet unnormalised top-5 distance per ImageNet-P perturbation (mean rank steps per frame pair).
#: Source: reference/METRICS.md "ImageNet-P" (Hendrycks & Dietterich 2019).
ALEXNET_P_UT5D: dict[str, float] = {
    "gaussian_noise": 4.77,
    "shot_noise": 5.76,
    "motion_blur": 1.93,
    "zoom_blur": 1.34,
    "snow": 2.42,
    "brightness": 1.19,
    "translate": 2.63,
    "rotate": 2.95,
    "tilt": 1.75,
    "scale": 4.48,
    # validation perturbations
    "speckle_noise": 3.89,
    "gaussian_blur": 0.70,
    "spatter": 1.26,
    "shear": 2.48,
}

_SEVERITIES = 5
_TOP = 5  # the "top-5" of the top-5 distance


# ---------------------------------------------------------------------------------------------------------
# Small checks
# ---------------------------------------------------------------------------------------------------------


def _number(v: object, what: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    scalar_tensor = isinstance(v, Tensor) and v.numel() == 1 and not v.dtype.is_complex
    if isinstance(v, bool) or not (isinstance(v, numbers.Real) or scalar_tensor):
        raise SpecError(f"{what} must be a number, got {v!r}")
    x = float(v)
    if not math.isfinite(x) or not lo <= x <= hi:
        raise SpecError(f"{what} must be a finite number in [{lo}, {hi}], got {x!r}")
    return x


def _fraction(v: object, what: str) -> float:
    return _number(v, what, 0.0, 1.0)


def _errors5(values: object, what: str) -> tuple[float, ...]:
    """Five per-severity errors (fractions) as a tuple."""
    if isinstance(values, str | bytes | Mapping) or not hasattr(values, "__len__"):
        raise SpecError(f"{what} must be a sequence of {_SEVERITIES} per-severity errors, got {values!r}")
    vals = list(values)
    if len(vals) != _SEVERITIES:
        raise SpecError(
            f"{what} must hold one error per severity 1..{_SEVERITIES} "
            f"({_SEVERITIES} values), got {len(vals)}"
        )
    return tuple(_fraction(e, f"{what}[{s}]") for s, e in enumerate(vals))


def _difficulty(difficulty: object) -> int:
    if isinstance(difficulty, bool) or not isinstance(difficulty, numbers.Integral) or difficulty < 1:
        raise SpecError(f"difficulty must be an int >= 1, got {difficulty!r}")
    return int(difficulty)


def _noise(noise: object) -> bool:
    if not isinstance(noise, bool):
        raise SpecError(f"noise must be True or False (is it a noise perturbation?), got {noise!r}")
    return noise


def is_noise_perturbation(name: str) -> bool:
    """Whether ``name`` counts as a noise perturbation: it contains "noise" (speckle_noise does)."""
    return "noise" in name


# ---------------------------------------------------------------------------------------------------------
# Top-5 distance
# ---------------------------------------------------------------------------------------------------------


def _d_from_tops(top_a: Tensor, top_b: Tensor) -> Tensor:
    """Published d from the leading entries of two rankings, (..., k) each, k = min(5, K): long (...,).

    Position p_i (0-based) in ranking b of a's i-th class is read off the top-k of b,
    capped at 5 when absent; d = sum_i |i - min(p_i, 5)|.
    """
    k = top_a.shape[-1]
    idx = torch.arange(k, device=top_a.device)
    match = top_a.unsqueeze(-1) == top_b.unsqueeze(-2)  # (..., i, j): a's i-th class is b's j-th
    pos = torch.where(match.any(-1), (match * idx).sum(-1), torch.full_like(idx, _TOP))
    return (idx - pos.clamp(max=_TOP)).abs().sum(-1)


def _check_ranks(ranks: Tensor, name: str) -> None:
    if not isinstance(ranks, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(ranks).__name__}")
    if ranks.dim() < 1 or ranks.shape[-1] < 1:
        raise ShapeError(f"{name} must have shape (..., K) with K >= 1 classes, got {tuple(ranks.shape)}")
    if ranks.dtype == torch.bool or ranks.is_floating_point() or ranks.is_complex():
        raise ShapeError(f"{name} must hold integer class indices, got dtype {ranks.dtype}")
    k = ranks.shape[-1]
    expected = torch.arange(k, device=ranks.device)
    if ranks.numel() and not bool((ranks.sort(-1).values == expected).all()):
        raise SpecError(
            f"{name} must be rankings: each (..., {k}) row a permutation of the class "
            f"indices 0..{k - 1} (sorted by decreasing score)"
        )


def _top_of_logits(logits: Tensor, name: str) -> Tensor:
    """The first min(5, K) classes of each row's ranking, (..., k) long; ties: lower index first."""
    if not isinstance(logits, Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ShapeError(f"{name} must have shape (..., K) with K >= 1 classes, got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ShapeError(f"{name} must be floating-point logits, got dtype {logits.dtype}")
    if not bool(torch.isfinite(logits).all()):
        raise ModelError(f"{name} contain NaN or Inf; expected finite logits")
    k = min(_TOP, logits.shape[-1])
    if logits.numel() == 0 or logits.shape[-1] <= 2 * _TOP:
        return torch.sort(logits, dim=-1, descending=True, stable=True).indices[..., :k]
    # O(K) instead of a full sort. The k classes: topk's, unless a class outside them ties with the k-th
    # value (a tie at the boundary), where the lowest-index tied classes are taken instead.
    values, top = torch.topk(logits, k, dim=-1)
    kth = values[..., -1:]
    boundary_tie = ((logits >= kth).sum(-1) > k).nonzero(as_tuple=True)
    if boundary_tie[0].numel():
        top = top.clone()
        top[boundary_tie] = _tied_top(logits[boundary_tie], kth[boundary_tie], k)
    # ranking order, ties by class index: sort the k by index, then stably by value
    top = top.sort(-1).values
    order = torch.sort(logits.gather(-1, top), dim=-1, descending=True, stable=True).indices
    return top.gather(-1, order)


def _tied_top(logits: Tensor, kth: Tensor, k: int) -> Tensor:
    """The k first-ranked classes of rows (R, K) with the k-th largest values kth (R, 1), in index order:
    every class above kth, then the lowest-index classes equal to it."""
    above, tied = logits > kth, logits == kth
    room = k - above.sum(-1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(-1) <= room))
    slot = torch.where(chosen, chosen.cumsum(-1) - 1, k)  # slot k collects the others, then is dropped
    classes = torch.arange(logits.shape[-1], device=logits.device).expand_as(logits)
    out = torch.zeros(logits.shape[0], k + 1, dtype=torch.long, device=logits.device)
    return out.scatter_(-1, slot, classes)[:, :k]


def top5_distance(ranks_a: Tensor, ranks_b: Tensor) -> Tensor:
    """Published top-5 distance d(pi, pi') between two batches of rankings (METRICS.md "ImageNet-P").

    Args:
        ranks_a: integer (..., K): each row the ranking pi, i.e. the class indices
            sorted by decreasing score (``argsort(-logits)``); the earlier frame.
        ranks_b: integer (..., K), the same shape: the ranking pi' of the later frame.

    Returns:
        long (...,): d = sum_{i=1..5} |min(i-1, 5) - min(sigma(i)-1, 5)| with
        sigma(i) = 1 + position of class pi(i) in pi' (the paper's sigma = pi^-1 pi'
        for rank vectors, ``rank2[argsort(rank1)]`` in ``ImageNet-P/test.py``).
        0 when the top-5 lists agree; at most 18. Not symmetric in (a, b). For
        K < 5 the sum runs over the K positions.

    Raises:
        ShapeError: not integer tensors of one shape (..., K).
        SpecError: a row is not a permutation of 0..K-1.

    Example (the paper's d'((2,1,3,...)) = d(identity, sigma) = 2):
        >>> import torch
        >>> top5_distance(torch.arange(8), torch.tensor([1, 0, 2, 3, 4, 5, 6, 7]))
        tensor(2)
    """
    _check_ranks(ranks_a, "ranks_a")
    _check_ranks(ranks_b, "ranks_b")
    if ranks_a.shape != ranks_b.shape:
        raise ShapeError(
            f"ranks_a and ranks_b must have one shape, got {tuple(ranks_a.shape)} and {tuple(ranks_b.shape)}"
        )
    k = min(_TOP, ranks_a.shape[-1])
    return _d_from_tops(ranks_a[..., :k].long(), ranks_b[..., :k].long())


def top5_distance_from_logits(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """:func:`top5_distance` of the rankings of two batches of logits, float (..., K) each: long (...,).

    Ties rank the lower class index first (the script's ``rankdata(-logits, 'ordinal')``).

    Raises:
        ShapeError: not floating-point tensors of one shape (..., K).
        ModelError: NaN or Inf logits.
    """
    top_a = _top_of_logits(logits_a, "logits_a")
    top_b = _top_of_logits(logits_b, "logits_b")
    if logits_a.shape != logits_b.shape:
        raise ShapeError(
            f"logits_a and logits_b must have one shape, got {tuple(logits_a.shape)} "
            f"and {tuple(logits_b.shape)}"
        )
    return _d_from_tops(top_a, top_b)


# ---------------------------------------------------------------------------------------------------------
# Frame pairs, flip probability, uT5D
# ---------------------------------------------------------------------------------------------------------


def _frame_pairs(t: int, noise: bool, difficulty: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Indices (earlier, later) of the compared frame pairs of a T-frame sequence.

    noise: (0, j) for j = 1..T-1 (difficulty picks the data set, not the pairs);
    otherwise (j - d, j) for j = d..T-1, the d chains of frames d apart.
    """
    later = torch.arange(1 if noise else difficulty, t, device=device)
    earlier = torch.zeros_like(later) if noise else later - difficulty
    return earlier, later


def _check_frames(t: int, noise: bool, difficulty: int, name: str) -> None:
    need = 2 if noise else difficulty + 1
    if t < need:
        rule = "frame 0 and at least one more" if noise else f"frames {difficulty} apart (difficulty)"
        raise ShapeError(f"{name} has {t} frames; comparing {rule} needs at least {need}")


def flip_counts(preds: Tensor, *, noise: bool, difficulty: int = 1) -> tuple[int, int]:
    """Top-1 flips and compared frame pairs of a batch of sequences, to accumulate across batches.

    Args:
        preds: integer (N, T): the top-1 class of every frame of N sequences.
        noise: True for a noise perturbation (:func:`is_noise_perturbation`): every
            frame j >= 1 is compared with frame 0. False: pairs (j - d, j), j >= d.
        difficulty: d >= 1 (ImageNet-P uses 1, 2, 3). For noise it selects the
            data set only and does not change the pairs.

    Returns:
        (flips, pairs): python ints; pairs = N * (T - 1) for noise, N * (T - d) otherwise.
        FP = sum of flips / sum of pairs over every batch (all sequences have T frames).

    Raises:
        ShapeError: not an integer (N, T) tensor, or too few frames for the pairing.
        SpecError: a bad ``noise`` or ``difficulty``.
    """
    noise, difficulty = _noise(noise), _difficulty(difficulty)
    check_shape(preds, ["N", "T"], "preds")
    if preds.is_floating_point() or preds.is_complex():
        raise ShapeError(f"preds must hold integer class indices, got dtype {preds.dtype}")
    _check_frames(preds.shape[1], noise, difficulty, "preds")
    earlier, later = _frame_pairs(preds.shape[1], noise, difficulty, preds.device)
    flips = int((preds[:, earlier] != preds[:, later]).sum())
    return flips, int(preds.shape[0] * later.numel())


def flip_probability(preds: Tensor, *, noise: bool, difficulty: int = 1) -> float:
    """Flip probability FP of a model on N sequences: fraction of compared pairs whose top-1 differs.

    ``preds`` int (N, T); pairing as :func:`flip_counts`. Returns a fraction in [0, 1]
    (papers print it x100 as %).

    Raises:
        ShapeError: as :func:`flip_counts`, and when N = 0 (no pairs).
    """
    flips, pairs = flip_counts(preds, noise=noise, difficulty=difficulty)
    if pairs == 0:
        raise ShapeError("preds holds no sequences (N = 0); the flip probability is undefined")
    return flips / pairs


def t5d_sums(ranks_or_logits: Tensor, *, noise: bool, difficulty: int = 1) -> tuple[int, int]:
    """Summed top-5 distances and compared frame pairs of a batch of sequences (to accumulate).

    Args:
        ranks_or_logits: (N, T, K): float logits per frame, or integer rankings
            (class indices by decreasing score, as :func:`top5_distance`).
        noise, difficulty: the pairing of :func:`flip_counts`; each pair contributes
            d(earlier frame, later frame).

    Returns:
        (sum_d, pairs): python ints; uT5D = sum of sum_d / sum of pairs.

    Raises:
        ShapeError: not (N, T, K), or too few frames for the pairing; a bad dtype.
        SpecError: integer rows that are not rankings; a bad ``noise`` or ``difficulty``.
        ModelError: NaN or Inf logits.
    """
    noise, difficulty = _noise(noise), _difficulty(difficulty)
    check_shape(ranks_or_logits, ["N", "T", "K"], "ranks_or_logits")
    if ranks_or_logits.is_floating_point():
        top = _top_of_logits(ranks_or_logits, "logits")
    else:
        _check_ranks(ranks_or_logits, "ranks")
        top = ranks_or_logits[..., : min(_TOP, ranks_or_logits.shape[-1])].long()
    _check_frames(top.shape[1], noise, difficulty, "ranks_or_logits")
    earlier, later = _frame_pairs(top.shape[1], noise, difficulty, top.device)
    d = _d_from_tops(top[:, earlier], top[:, later])
    return int(d.sum()), int(d.numel())


def unnormalized_t5d(ranks_or_logits: Tensor, *, noise: bool, difficulty: int = 1) -> float:
    """Unnormalised top-5 distance uT5D: mean d over the compared frame pairs of N sequences.

    ``ranks_or_logits`` (N, T, K) float logits or integer rankings; pairing as
    :func:`flip_counts`. Returns mean rank steps per pair (0 to 18), not a fraction.

    Raises:
        ShapeError: as :func:`t5d_sums`, and when N = 0 (no pairs).
    """
    total, pairs = t5d_sums(ranks_or_logits, noise=noise, difficulty=difficulty)
    if pairs == 0:
        raise ShapeError("ranks_or_logits holds no sequences (N = 0); uT5D is undefined")
    return total / pairs


# ---------------------------------------------------------------------------------------------------------
# Reference models (normalisers)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A normalising model's published or measured numbers.

    Attributes:
        name: the model, e.g. ``"AlexNet (Hendrycks & Dietterich 2019, published)"``.
        suite: the benchmark suite of the numbers (``imagenet-c``, ``cifar10-p``, ...), or a
            family (``imagenet``) when it holds both C and P numbers, as :data:`ALEXNET` does.
        corruption_errors: per corruption, either its 5 per-severity top-1 errors (a tuple,
            severities 1..5) or one severity-averaged error (a float); fractions.
        clean_error: clean top-1 error (fraction), or None if unknown.
        fp: per perturbation, flip probability (fraction).
        ut5d: per perturbation, unnormalised top-5 distance.
        difficulty: the ImageNet-P difficulty of ``fp``/``ut5d``, None if not stated.
        source: where the numbers come from (a citation or a file path).
    """

    name: str
    suite: str
    corruption_errors: dict[str, float | tuple[float, ...]] = field(default_factory=dict)
    clean_error: float | None = None
    fp: dict[str, float] = field(default_factory=dict)
    ut5d: dict[str, float] = field(default_factory=dict)
    difficulty: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        errs: dict[str, float | tuple[float, ...]] = {}
        for c, v in dict(self.corruption_errors).items():
            what = f"reference {self.name!r}: error of {c}"
            errs[c] = _fraction(v, what) if isinstance(v, numbers.Real) else _errors5(v, what)
        object.__setattr__(self, "corruption_errors", errs)
        if self.clean_error is not None:
            object.__setattr__(self, "clean_error", _fraction(self.clean_error, f"{self.name}: clean error"))
        object.__setattr__(
            self, "fp", {p: _fraction(v, f"{self.name}: FP of {p}") for p, v in dict(self.fp).items()}
        )
        object.__setattr__(
            self,
            "ut5d",
            {p: _number(v, f"{self.name}: uT5D of {p}", 0.0) for p, v in dict(self.ut5d).items()},
        )
        if self.difficulty is not None:
            object.__setattr__(self, "difficulty", _difficulty(self.difficulty))

    def covers(self, suite: str) -> bool:
        """Whether these numbers may normalise results of ``suite`` (``imagenet`` covers imagenet-c/-p)."""
        return suite == self.suite or suite.rsplit("-", 1)[0] == self.suite

    def mean_errors(self) -> dict[str, float]:
        """Severity-averaged error per corruption (fractions)."""
        return {c: _mean_error(v) for c, v in self.corruption_errors.items()}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready dict (per-severity errors as lists)."""
        return {
            "name": self.name,
            "suite": self.suite,
            "source": self.source,
            "clean_error": self.clean_error,
            "difficulty": self.difficulty,
            "corruption_errors": {
                c: list(v) if isinstance(v, tuple) else v for c, v in self.corruption_errors.items()
            },
            "fp": dict(self.fp),
            "ut5d": dict(self.ut5d),
        }


def _mean_error(v: float | tuple[float, ...]) -> float:
    return sum(v) / len(v) if isinstance(v, tuple) else float(v)


#: AlexNet as published (METRICS.md): severity-averaged ImageNet-C errors, clean error, ImageNet-P
#: FP and uT5D. The published tables do not state the ImageNet-P difficulty (``test.py`` defaults to 1).
ALEXNET = Reference(
    name="AlexNet (Hendrycks & Dietterich 2019, published)",
    suite="imagenet",
    corruption_errors=dict(ALEXNET_C_ERRORS),
    clean_error=ALEXNET_CLEAN_ERROR,
    fp=dict(ALEXNET_P_FP),
    ut5d=dict(ALEXNET_P_UT5D),
    source="Hendrycks & Dietterich, ICLR 2019 (reference/METRICS.md, ImageNet-C and ImageNet-P)",
)


def _field(record: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in record or record[key] is None:
        raise SpecError(f"{where} lacks {key!r}")
    return record[key]


def load_reference(path: str | os.PathLike, *, suite: str | None = None) -> Reference:
    """Read a reference model's ``results.json`` (written by the benchmark command) as a normaliser.

    C suites (``<name>-c``): ``{"suite", "model", "clean_error", "corruptions": {name:
    {"errors": [e1..e5], "severities": [1..5] (optional), "mean_error"}}}``. The 5
    per-severity errors are kept; a record with only ``mean_error`` is kept as an
    average; a record measured at only some severities cannot normalise (error).
    ``clean_error`` may be null (relative CE then needs it from elsewhere).

    P suites (``<name>-p``): ``{"suite", "model", "difficulty" (optional), "perturbations":
    {name: {"fp", "ut5d", "difficulty" (optional)}}}``.

    Args:
        path: the JSON file.
        suite: if given, the suite the file must hold (e.g. ``cifar10-c``).

    Returns:
        A :class:`Reference`; ``name`` is the file's model spec, ``source`` the path.

    Raises:
        SpecError: unreadable or invalid JSON, an unknown or unexpected suite, missing
            fields or out-of-range values; the message names the file and the field.
    """
    where = f"reference file {os.fspath(path)!r}"
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise SpecError(f"cannot read {where}: {exc}") from None
    except ValueError as exc:
        raise SpecError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{where} must hold a JSON object (a benchmark results.json)")
    file_suite = _field(doc, "suite", where)
    if not isinstance(file_suite, str) or not file_suite.endswith(("-c", "-p")):
        raise SpecError(
            f"{where}: suite must name a C or P benchmark (e.g. cifar10-c, imagenet-p), got {file_suite!r}"
        )
    if suite is not None and file_suite != suite:
        raise SpecError(f"{where} holds {file_suite} results; expected {suite}")
    model = doc.get("model")
    name = str(model.get("spec", model) if isinstance(model, dict) else model) if model else os.fspath(path)
    try:
        if file_suite.endswith("-c"):
            return _c_reference(doc, name, file_suite, where)
        return _p_reference(doc, name, file_suite, where)
    except SpecError as exc:
        msg = str(exc)
        raise SpecError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def _c_reference(doc: Mapping[str, Any], name: str, suite: str, where: str) -> Reference:
    records = _field(doc, "corruptions", where)
    if not isinstance(records, dict) or not records:
        raise SpecError(f"{where}: 'corruptions' must map corruption names to their results")
    errors: dict[str, float | tuple[float, ...]] = {}
    for c, rec in records.items():
        at = f"{where}, corruption {c!r}"
        if not isinstance(rec, dict):
            raise SpecError(f"{at} must be an object")
        if rec.get("errors") is not None:
            sev = rec.get("severities", list(range(1, len(rec["errors"]) + 1)))
            if list(sev) != list(range(1, _SEVERITIES + 1)):
                raise SpecError(
                    f"{at} was measured at severities {list(sev)}; a normaliser needs all of 1..{_SEVERITIES}"
                )
            errors[c] = _errors5(rec["errors"], f"{at} errors")
        elif rec.get("mean_error") is not None:
            errors[c] = _fraction(rec["mean_error"], f"{at} mean_error")
        else:
            raise SpecError(f"{at} lacks 'errors' (5 per-severity errors) and 'mean_error'")
    clean = doc.get("clean_error")
    return Reference(
        name=name,
        suite=suite,
        corruption_errors=errors,
        clean_error=None if clean is None else _fraction(clean, f"{where} clean_error"),
        source=where.removeprefix("reference file ").strip("'"),
    )


def _p_reference(doc: Mapping[str, Any], name: str, suite: str, where: str) -> Reference:
    records = _field(doc, "perturbations", where)
    if not isinstance(records, dict) or not records:
        raise SpecError(f"{where}: 'perturbations' must map perturbation names to their results")
    fp: dict[str, float] = {}
    ut5d: dict[str, float] = {}
    difficulties = set()
    if doc.get("difficulty") is not None:
        difficulties.add(_difficulty(doc["difficulty"]))
    for p, rec in records.items():
        at = f"{where}, perturbation {p!r}"
        if not isinstance(rec, dict):
            raise SpecError(f"{at} must be an object")
        fp[p] = _fraction(_field(rec, "fp", at), f"{at} fp")
        ut5d[p] = _number(_field(rec, "ut5d", at), f"{at} ut5d", 0.0)
        if rec.get("difficulty") is not None:
            difficulties.add(_difficulty(rec["difficulty"]))
    if len(difficulties) > 1:
        raise SpecError(f"{where} mixes difficulties {sorted(difficulties)}; a normaliser needs one")
    return Reference(
        name=name,
        suite=suite,
        fp=fp,
        ut5d=ut5d,
        difficulty=difficulties.pop() if difficulties else None,
        source=where.removeprefix("reference file ").strip("'"),
    )


# ---------------------------------------------------------------------------------------------------------
# ImageNet-C scores
# ---------------------------------------------------------------------------------------------------------


def corruption_errors(errors: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Severity-averaged error per corruption: mean_s E(f, s, c) over s = 1..5 (fractions).

    Args:
        errors: corruption name -> its 5 top-1 errors (fractions), severities 1..5.

    Raises:
        SpecError: not exactly 5 errors per corruption, or one outside [0, 1].
    """
    return {c: _mean_error(_errors5(v, f"errors of {c}")) for c, v in errors.items()}


def _reference_sums(reference: Mapping[str, Any] | Reference) -> dict[str, float]:
    """sum_s E(ref, s, c) per corruption: the 5 errors summed, or 5 x the severity-averaged error."""
    table = reference.corruption_errors if isinstance(reference, Reference) else reference
    out = {}
    for c, v in table.items():
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            out[c] = _SEVERITIES * _fraction(v, f"reference error of {c}")
        else:
            out[c] = sum(_errors5(v, f"reference errors of {c}"))
    return out


def _ref_name(reference: object) -> str:
    return f"reference {reference.name!r}" if isinstance(reference, Reference) else "the reference"


def _ratios(
    num: Mapping[str, float], den: Mapping[str, float], what: str, ref: str, allow_missing: bool
) -> dict[str, float]:
    missing = [c for c in num if c not in den]
    if missing and not allow_missing:
        raise SpecError(f"{ref} has no {what} for {', '.join(missing)}; pass allow_missing=True to skip them")
    out = {}
    for c, v in num.items():
        if c in den:
            if den[c] == 0:
                raise SpecError(f"{ref}'s {what} for {c} is 0; the ratio is undefined")
            out[c] = v / den[c]
    return out


def ce(
    errors: Mapping[str, Sequence[float]],
    reference: Mapping[str, Any] | Reference,
    *,
    allow_missing: bool = False,
) -> dict[str, float]:
    """Corruption error CE_c = sum_s E(f, s, c) / sum_s E(ref, s, c) per corruption (a ratio; x100 = %).

    Args:
        errors: corruption -> the model's 5 per-severity top-1 errors (fractions).
        reference: corruption -> the reference's 5 per-severity errors or one
            severity-averaged error (e.g. :data:`ALEXNET_C_ERRORS`), or a :class:`Reference`.
        allow_missing: leave out corruptions the reference lacks instead of raising.

    Returns:
        corruption -> CE_c, for every corruption of ``errors`` (that the reference has).

    Raises:
        SpecError: bad errors; a corruption the reference lacks (naming it); a zero reference error.
    """
    sums = {c: sum(_errors5(v, f"errors of {c}")) for c, v in errors.items()}
    return _ratios(sums, _reference_sums(reference), "error", _ref_name(reference), allow_missing)


def relative_ce(
    errors: Mapping[str, Sequence[float]],
    clean_error: float,
    reference: Mapping[str, Any] | Reference,
    reference_clean_error: float | None = None,
    *,
    allow_missing: bool = False,
) -> dict[str, float]:
    """Relative CE_c = sum_s (E(f, s, c) - E_clean(f)) / sum_s (E(ref, s, c) - E_clean(ref)).

    Args:
        errors: corruption -> the model's 5 per-severity errors (fractions).
        clean_error: the model's clean top-1 error (fraction).
        reference: as :func:`ce`.
        reference_clean_error: the reference's clean error; defaults to
            ``reference.clean_error`` for a :class:`Reference` (0.435 for :data:`ALEXNET`).
        allow_missing: leave out corruptions the reference lacks instead of raising.

    Returns:
        corruption -> relative CE (a ratio; x100 = %). It is negative where the
        model's corrupted error is below its clean error.

    Raises:
        SpecError: as :func:`ce`; no reference clean error; a reference whose
            corrupted and clean errors coincide (zero denominator).
    """
    clean = _fraction(clean_error, "clean_error")
    if reference_clean_error is None:
        reference_clean_error = reference.clean_error if isinstance(reference, Reference) else None
        if reference_clean_error is None:
            raise SpecError(f"{_ref_name(reference)} has no clean error; pass reference_clean_error")
    ref_clean = _fraction(reference_clean_error, "reference_clean_error")
    num = {c: sum(_errors5(v, f"errors of {c}")) - _SEVERITIES * clean for c, v in errors.items()}
    den = {c: s - _SEVERITIES * ref_clean for c, s in _reference_sums(reference).items()}
    return _ratios(num, den, "error above its clean error", _ref_name(reference), allow_missing)


def _mean_over(
    values: Mapping[str, float | None], names: Sequence[str] | None, what: str, item: str, allow_missing: bool
) -> float | tuple[float, list[str]]:
    """Mean of ``values`` over ``names`` (the m-score ``what`` of the per-name ``item``)."""
    names = list(values) if names is None else list(names)
    if isinstance(names, str) or not names:
        raise SpecError(f"names for the {what} must be a non-empty list of names")
    missing = [n for n in names if values.get(n) is None]
    present = [_number(values[n], f"{item} of {n}") for n in names if values.get(n) is not None]
    if missing and not allow_missing:
        raise SpecError(
            f"the {what} needs {', '.join(missing)} (missing); pass allow_missing=True "
            "for the mean over those present"
        )
    if not present:
        raise SpecError(f"none of {', '.join(names)} is present; the {what} is undefined")
    mean = sum(present) / len(present)
    return (mean, missing) if allow_missing else mean


_Values = Mapping[str, "float | None"]


@overload
def mce(
    ce_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[False] = ...
) -> float: ...
@overload
def mce(
    ce_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[True]
) -> tuple[float, list[str]]: ...
def mce(ce_values, names=BENCHMARK_CORRUPTIONS, *, allow_missing=False):
    """Mean corruption error mCE: the mean of CE_c over ``names`` (a ratio; papers print x100 as %).

    Args:
        ce_values: corruption -> CE_c (:func:`ce`); a None value counts as missing.
        names: the corruptions to average; default the 15 :data:`BENCHMARK_CORRUPTIONS`;
            None = every key of ``ce_values``.
        allow_missing: return ``(mean over those present, missing names)`` instead of raising.

    Raises:
        SpecError: a name is missing (the message lists them) unless ``allow_missing``;
            none present.
    """
    return _mean_over(ce_values, names, "mCE", "CE", allow_missing)


@overload
def relative_mce(
    relative_ce_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[False] = ...
) -> float: ...
@overload
def relative_mce(
    relative_ce_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[True]
) -> tuple[float, list[str]]: ...
def relative_mce(relative_ce_values, names=BENCHMARK_CORRUPTIONS, *, allow_missing=False):
    """Relative mCE: the mean of :func:`relative_ce` values over ``names`` (a ratio; x100 = %).

    Arguments and errors as :func:`mce`.
    """
    return _mean_over(relative_ce_values, names, "relative mCE", "relative CE", allow_missing)


# ---------------------------------------------------------------------------------------------------------
# ImageNet-P scores
# ---------------------------------------------------------------------------------------------------------


def fr(
    fp: Mapping[str, float], reference_fp: Mapping[str, float] | Reference, *, allow_missing: bool = False
) -> dict[str, float]:
    """Flip rate FR_p = FP_p(f) / FP_p(ref) per perturbation (a ratio; x100 = %).

    Args:
        fp: perturbation -> the model's flip probability (fraction, :func:`flip_probability`).
        reference_fp: perturbation -> the reference's FP (e.g. :data:`ALEXNET_P_FP`), or a
            :class:`Reference`. Both should be at the same difficulty.
        allow_missing: leave out perturbations the reference lacks instead of raising.

    Raises:
        SpecError: an FP outside [0, 1]; a perturbation the reference lacks; a zero reference FP.
    """
    table = reference_fp.fp if isinstance(reference_fp, Reference) else reference_fp
    num = {p: _fraction(v, f"FP of {p}") for p, v in fp.items()}
    den = {p: _fraction(v, f"reference FP of {p}") for p, v in table.items()}
    return _ratios(num, den, "flip probability", _ref_name(reference_fp), allow_missing)


def t5d(
    ut5d: Mapping[str, float], reference: Mapping[str, float] | Reference, *, allow_missing: bool = False
) -> dict[str, float]:
    """Top-5 distance T5D_p = uT5D_p(f) / uT5D_p(ref) per perturbation (a ratio; x100 = %).

    Args:
        ut5d: perturbation -> the model's uT5D (:func:`unnormalized_t5d`).
        reference: perturbation -> the reference's uT5D (e.g. :data:`ALEXNET_P_UT5D`), or a
            :class:`Reference`.
        allow_missing: leave out perturbations the reference lacks instead of raising.

    Raises:
        SpecError: a negative uT5D; a perturbation the reference lacks; a zero reference uT5D.
    """
    table = reference.ut5d if isinstance(reference, Reference) else reference
    num = {p: _number(v, f"uT5D of {p}", 0.0) for p, v in ut5d.items()}
    den = {p: _number(v, f"reference uT5D of {p}", 0.0) for p, v in table.items()}
    return _ratios(num, den, "top-5 distance", _ref_name(reference), allow_missing)


@overload
def mfr(
    fr_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[False] = ...
) -> float: ...
@overload
def mfr(
    fr_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[True]
) -> tuple[float, list[str]]: ...
def mfr(fr_values, names=BENCHMARK_PERTURBATIONS, *, allow_missing=False):
    """Mean flip rate mFR: the mean of FR_p over ``names`` (default the 10 :data:`BENCHMARK_PERTURBATIONS`).

    For CIFAR-10-P as ``cifar-p-eval.py`` averages, pass ``names=CIFAR_P_EVAL_PERTURBATIONS``.
    Arguments and errors as :func:`mce`.
    """
    return _mean_over(fr_values, names, "mFR", "FR", allow_missing)


@overload
def mt5d(
    t5d_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[False] = ...
) -> float: ...
@overload
def mt5d(
    t5d_values: _Values, names: Sequence[str] | None = ..., *, allow_missing: Literal[True]
) -> tuple[float, list[str]]: ...
def mt5d(t5d_values, names=BENCHMARK_PERTURBATIONS, *, allow_missing=False):
    """Mean top-5 distance mT5D: the mean of T5D_p over ``names`` (default the 10 test perturbations).

    Arguments and errors as :func:`mce`.
    """
    return _mean_over(t5d_values, names, "mT5D", "T5D", allow_missing)
