"""Top-5 distance between rankings, frame pairs, flip counts and uT5D sums of ImageNet-P sequences.

Part of :mod:`shiftattack.metrics.corruption` (see its docstring for the definitions)."""

from __future__ import annotations

import torch
from torch import Tensor

from shiftattack.errors import ModelError, ShapeError, SpecError, check_shape
from shiftattack.metrics.corruption.constants import _TOP, _difficulty, _noise

__all__ = [
    "flip_counts",
    "flip_probability",
    "t5d_sums",
    "top5_distance",
    "top5_distance_from_logits",
    "unnormalized_t5d",
]


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
