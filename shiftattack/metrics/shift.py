"""Shift-robustness metrics: consistency, diagonal curve, P(top-1 change), MAC, flip rates.

Definitions follow ``reference/METRICS.md`` ("Shift metrics"); each docstring
states the exact protocol and where it deviates from the paper. Shifts use the
toolkit's sign: ``(dx, dy)`` moves image *content* ``dx`` px right and ``dy`` px
down; a crop-mode shift is relative to the centred window of the canvas
(:func:`~shiftattack.shifts.crop_window`).

A *model* is any callable mapping float images (N, 3, H, W) in [0, 1] to logits
(N, classes). It runs under :func:`torch.inference_mode` on at most
``batch_size`` inputs at a time; put an ``nn.Module`` in eval mode first (these
pure functions never change it). Logits that are not a finite (n, classes)
tensor raise :class:`~shiftattack.errors.ModelError`.

Units: ``consistency`` and flip rates are percentages; accuracies,
probabilities, ``p_top1_change`` and ``mac`` are fractions in [0, 1].

Arguments shared by the metric functions (keyword-only where they apply):

* ``model``: callable, (N, 3, h, w) float -> logits (N, classes).
* ``mode``: ``crop`` (the input is a canvas (N, 3, Hs, Ws) and the model sees
  ``size`` windows of it) or an integer mode ``circular``, ``zero``, ``reflect``,
  ``replicate`` (the image (N, 3, H, W) itself is shifted, exactly).
* ``size``: window size in pixels, ``h`` or ``(h, w)`` (crop mode only).
* ``fill``: value of the vacated border in ``zero`` mode (0 = black).
* ``batch_size``: model inputs per forward pass (default 256).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from shiftattack.errors import DataError, ShapeError, SpecError, check_images, check_shape
from shiftattack.runtime.engine import checked_logits
from shiftattack.shifts.functional import INTEGER_MODES, crop_window, shift

__all__ = [
    "DIRECTIONS", "ConsistencyResult", "DiagonalCurve", "FlipRateResult", "Top1ChangeResult",
    "accuracy_vs_radius", "consistency", "consistency_shifted", "diagonal_curve", "flip_rate",
    "normalized_flip_rate", "top1_change",
]

Model = Callable[[Tensor], Tensor]
Size = int | tuple[int, int]
Batcher = Callable[[slice], Tensor]  # image slice -> model inputs
View = Callable[[Tensor, "int | Tensor", "int | Tensor"], Tensor]

#: Unit steps (dx, dy) in pixels of the named flip-rate directions.
DIRECTIONS: dict[str, tuple[int, int]] = {
    "horizontal": (1, 0), "vertical": (0, 1), "diagonal": (1, 1),
}


class _JSON:
    def to_json(self) -> dict:
        """Plain dict of the summary fields (JSON-serialisable; per-image tensors left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self)  # type: ignore[arg-type]
                if not f.name.startswith("per_image")}


def _per_image() -> Tensor | None:
    """A per-image tensor field: not compared, not printed, not in ``to_json``."""
    return field(default=None, compare=False, repr=False)  # type: ignore[return-value]


@dataclass(frozen=True)
class ConsistencyResult(_JSON):
    """``consistency``: percent of the ``n_pairs`` view pairs whose top-1 agree (``n_agree``).

    ``per_image`` (N,) float64: the fraction of each image's pairs that agree (its mean
    times 100 is ``consistency``), for paired intervals (:mod:`shiftattack.metrics.stats`).
    """

    consistency: float
    n_pairs: int
    n_agree: int
    per_image: Tensor | None = _per_image()


@dataclass(frozen=True)
class DiagonalCurve(_JSON):
    """Per diagonal offset d (px): mean true-class softmax probability and accuracy (fractions)."""

    offsets: list[int]
    correct_prob: list[float]
    accuracy: list[float]


@dataclass(frozen=True)
class Top1ChangeResult(_JSON):
    """P(top-1 change) and MAC (fractions in [0, 1]) over ``n_pairs`` consecutive frame pairs.

    ``per_image_change`` and ``per_image_mac`` (N,) float64: the same two figures per image
    (their means are ``p_top1_change`` and ``mac``).
    """

    p_top1_change: float
    mac: float
    n_pairs: int
    per_image_change: Tensor | None = _per_image()
    per_image_mac: Tensor | None = _per_image()


@dataclass(frozen=True)
class FlipRateResult(_JSON):
    """Flip rates in percent.

    ``rates[direction][d - 1]`` is the rate at distance d px; ``per_direction``
    averages it over d = 1..max_distance, ``per_distance`` over directions, and
    ``mean_flip_rate`` over every (direction, distance) cell. ``per_image`` (N,) float64:
    the fraction of each image's pairs (every direction, distance and base offset) that
    flip; its mean times 100 is ``mean_flip_rate``.
    """

    mean_flip_rate: float
    per_direction: dict[str, float]
    per_distance: dict[int, float]
    rates: dict[str, list[float]]
    max_distance: int
    n_images: int
    mode: str
    per_image: Tensor | None = _per_image()

    def to_json(self) -> dict:
        out = super().to_json()
        out["per_distance"] = {str(d): r for d, r in self.per_distance.items()}
        return out



def _evaluate(model: Model, n: int, make_batch: Batcher, batch_size: int) -> Tensor:
    """Logits (n, classes) of ``model(make_batch(s))`` over slices s of ``batch_size``.

    float64 logits stay float64; any other dtype is cast to float32.
    """
    batch_size = _int(batch_size, "batch_size", 1)
    chunks: list[Tensor] = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            inputs = make_batch(slice(start, min(n, start + batch_size)))
            logits = checked_logits(model, inputs, chunks[0].shape[1] if chunks else None)
            chunks.append(logits if logits.dtype == torch.float64 else logits.float())
    return torch.cat(chunks)


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _int(v: object, name: str, minimum: int = 0) -> int:
    if not _is_int(v) or v < minimum:  # type: ignore[operator]
        raise SpecError(f"{name} must be an int >= {minimum}, got {v!r}")
    return int(v)  # type: ignore[call-overload]


def _pair(value: Sequence[int], name: str, nonzero: bool = False) -> tuple[int, int]:
    """A pair of ints (dx, dy) in pixels; SpecError otherwise (or when zero and ``nonzero``)."""
    d = tuple(value)
    if len(d) != 2 or not all(_is_int(v) for v in d) or (nonzero and d == (0, 0)):
        kind = "a non-zero pair" if nonzero else "a pair"
        raise SpecError(f"{name} must be {kind} of ints (dx, dy), got {value!r}")
    return int(d[0]), int(d[1])


def _size(size: Size | None, what: str) -> tuple[int, int]:
    if size is None:
        raise SpecError(f"{what} in crop mode needs the window size (h, w)")
    hw = (size, size) if _is_int(size) else tuple(size)  # type: ignore[arg-type]
    if len(hw) != 2 or not all(_is_int(v) and v >= 1 for v in hw):
        raise SpecError(f"size must be a positive int or a pair (h, w) of them, got {size!r}")
    return int(hw[0]), int(hw[1])


def _images(x: Tensor, name: str) -> int:
    """check_images plus non-empty; returns N."""
    check_images(x, name)
    if x.shape[0] == 0:
        raise ShapeError(f"{name} must hold at least one image, got shape {tuple(x.shape)}")
    return int(x.shape[0])


def _view_fn(mode: str, size: Size | None, fill: float, what: str) -> View:
    """``view(images, dx, dy)``: the crop window of a canvas, or an exact integer shift."""
    if mode == "crop":
        hw = _size(size, what)
        return lambda imgs, dx, dy: crop_window(imgs, dx, dy, hw)
    if mode not in INTEGER_MODES:
        raise SpecError(
            f"unknown mode {mode!r}; expected crop or one of {', '.join(INTEGER_MODES)}"
        )
    return lambda imgs, dx, dy: shift(imgs, dx, dy, mode, fill)


def _agreement(model: Model, x: Tensor, view: View, offsets: Tensor, bs: int) -> ConsistencyResult:
    """offsets (R, N, 2 views, 2 = (dx, dy)) int64 on x's device: count top-1 agreements."""
    n = x.shape[0]
    per_image = torch.zeros(n, dtype=torch.float64)
    for rep in offsets:
        top1 = []
        for off in (rep[:, 0], rep[:, 1]):  # (N, 2) each
            logits = _evaluate(model, n, lambda i, o=off: view(x[i], o[i, 0], o[i, 1]), bs)
            top1.append(logits.argmax(1))
        per_image += (top1[0] == top1[1]).cpu().double()
    agree, n_pairs = int(per_image.sum()), offsets.shape[0] * n
    return ConsistencyResult(100.0 * agree / n_pairs, n_pairs, agree, per_image / offsets.shape[0])


def _device(generator: torch.Generator | None) -> torch.device:
    """Device of the random draws: the generator's (CPU without one)."""
    return generator.device if generator is not None else torch.device("cpu")



def consistency(
    model: Model, canvas: Tensor, *, size: Size, n_repeats: int = 5, max_offset: int | None = None,
    generator: torch.Generator | None = None, batch_size: int = 256,
) -> ConsistencyResult:
    """Consistency of top-1 predictions between two random windows (Zhang, ICML 2019).

    Protocol: for each repeat and each image independently, draw two window
    top-left corners uniformly in ``[0, Hs-h-1] x [0, Ws-w-1]`` as Zhang's
    ``randint(Hs - h)`` does (224 windows of 256: corners 0..31, never 32; a
    canvas no larger than the window on an axis gives corner 0 there), or, with
    ``max_offset``, two content shifts uniformly in ``[-max_offset, max_offset]^2``
    about the centred window, with ``torch.randint`` on ``generator``, so a
    seeded generator gives a deterministic result; the two windows may coincide.
    Deviation from Zhang's code: offsets are drawn per image, not once per batch.

    Args:
        canvas: source images (N, 3, Hs, Ws), float in [0, 1].
        size: window size in pixels, ``h`` or ``(h, w)``.
        n_repeats: pairs per image (Zhang: 5 passes).
        max_offset: largest content shift from the centred window, px per axis.
        generator: source of the offsets (CPU or on the canvas device).

    Returns:
        :class:`ConsistencyResult` over ``N * n_repeats`` pairs (percent).
    """
    n = _images(canvas, "canvas")
    h, w = _size(size, "consistency")
    hs, ws = canvas.shape[-2:]
    if h > hs or w > ws:
        raise SpecError(f"window {h}x{w} is larger than the canvas {hs}x{ws}")
    reps, dev = _int(n_repeats, "n_repeats", 1), _device(generator)
    cy, cx = (hs - h) // 2, (ws - w) // 2
    if max_offset is None:
        left = torch.randint(0, max(ws - w, 1), (reps, n, 2), generator=generator, device=dev)
        top = torch.randint(0, max(hs - h, 1), (reps, n, 2), generator=generator, device=dev)
        offsets = torch.stack([cx - left, cy - top], dim=-1)  # content shift = centre - corner
    else:
        m, room = _int(max_offset, "max_offset"), min(cx, cy, ws - w - cx, hs - h - cy)
        if m > room:
            raise SpecError(
                f"max_offset {m} px leaves the {hs}x{ws} canvas with a {h}x{w} window; "
                f"at most {room} px"
            )
        offsets = torch.randint(-m, m + 1, (reps, n, 2, 2), generator=generator, device=dev)
    view = _view_fn("crop", (h, w), 0.0, "consistency")
    return _agreement(model, canvas, view, offsets.to(canvas.device), batch_size)


def consistency_shifted(
    model: Model, x: Tensor, *, mode: str, max_shift: int, n_repeats: int = 5,
    generator: torch.Generator | None = None, fill: float = 0.0, batch_size: int = 256,
) -> ConsistencyResult:
    """Consistency under two random integer shifts of the image itself (no larger canvas).

    Protocol: for each repeat and each image independently, two shifts
    ``(dx, dy)`` uniform in ``[-max_shift, max_shift]^2`` (``torch.randint`` on
    ``generator``); the pair agrees when both shifted images get the same top-1.

    Args:
        x: images (N, 3, H, W), float in [0, 1].
        mode: ``circular``, ``zero``, ``reflect`` or ``replicate``.
        max_shift: K, the largest shift in pixels per axis.
        n_repeats: pairs per image.
        generator: source of the shifts.

    Returns:
        :class:`ConsistencyResult` over ``N * n_repeats`` pairs (percent).
    """
    n = _images(x, "x")
    if mode not in INTEGER_MODES:
        raise SpecError(f"unknown mode {mode!r}; expected one of {', '.join(INTEGER_MODES)}")
    k, reps = _int(max_shift, "max_shift"), _int(n_repeats, "n_repeats", 1)
    dev = _device(generator)
    offsets = torch.randint(-k, k + 1, (reps, n, 2, 2), generator=generator, device=dev)
    view = _view_fn(mode, None, fill, "consistency_shifted")
    return _agreement(model, x, view, offsets.to(x.device), batch_size)



def diagonal_curve(
    model: Model, canvas: Tensor, labels: Tensor, *, size: Size, max_offset: int,
    batch_size: int = 256,
) -> DiagonalCurve:
    """Zhang's diagonal shift curve (``-ed``): windows whose top-left corner is at (d, d).

    Args:
        canvas: source images (N, 3, Hs, Ws), float in [0, 1].
        labels: true classes (N,), integer, in [0, classes).
        size: window size ``h`` or ``(h, w)`` in pixels.
        max_offset: largest d in pixels, at most ``Hs - h`` and ``Ws - w`` (Zhang: 32).

    Returns:
        :class:`DiagonalCurve`: for d = 0..max_offset, the mean softmax probability
        of the true class and the top-1 accuracy (fractions).
    """
    n = _images(canvas, "canvas")
    check_shape(labels, [n], "labels")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ShapeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    h, w = _size(size, "diagonal_curve")
    hs, ws = canvas.shape[-2:]
    top_d = _int(max_offset, "max_offset")
    if top_d > hs - h or top_d > ws - w:
        raise SpecError(f"max_offset {top_d} px leaves the {hs}x{ws} canvas with a {h}x{w} window")
    cy, cx = (hs - h) // 2, (ws - w) // 2
    probs, accs = [], []
    for d in range(top_d + 1):
        logits = _evaluate(
            model, n, lambda i, d=d: crop_window(canvas[i], cx - d, cy - d, (h, w)), batch_size
        )
        y = labels.to(logits.device, torch.long)
        if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
            raise DataError(f"labels must lie in [0, {logits.shape[1]}) for this model's classes")
        probs.append(float(logits.softmax(1).gather(1, y[:, None]).double().mean()))
        accs.append(float((logits.argmax(1) == y).double().mean()))
    return DiagonalCurve(list(range(top_d + 1)), probs, accs)



def top1_change(
    model: Model, x: Tensor, *, mode: str = "crop", size: Size | None = None, n_shifts: int = 8,
    direction: Sequence[int] = (1, 0), start: Sequence[int] = (0, 0), fill: float = 0.0,
    batch_size: int = 256,
) -> Top1ChangeResult:
    """P(top-1 change) and mean absolute change (MAC) along a shift sequence (Azulay & Weiss).

    Protocol: frame k (k = 0..n_shifts) is the image at content shift
    ``start + k * direction`` px. In ``crop`` mode ``x`` is a canvas and the
    frames are windows (sliding-crop protocol; ``start=(0, 0)`` is the centred
    window); in an integer mode the image itself is shifted (``zero`` is the
    black-canvas protocol). With c the top-1 class of frame 0 of an image, over
    its ``n_shifts`` consecutive pairs (k-1, k): P(top-1 change) = fraction of
    pairs whose top-1 differ, MAC = mean of ``|p_k[c] - p_{k-1}[c]|`` (softmax).

    Args:
        x: images (N, 3, H, W), or the canvas (N, 3, Hs, Ws) in crop mode.
        n_shifts: shifts per image (frames - 1), at least 1 (paper: 8).
        direction: step (dx, dy) in pixels between consecutive frames.
        start: content shift (dx, dy) of frame 0 in pixels.

    Returns:
        :class:`Top1ChangeResult` over ``N * n_shifts`` pairs (fractions).
    """
    n = _images(x, "x")
    steps = _int(n_shifts, "n_shifts", 1)
    (ux, uy), (sx, sy) = _pair(direction, "direction", nonzero=True), _pair(start, "start")
    view = _view_fn(mode, size, fill, "top1_change")
    changes = torch.zeros(n, dtype=torch.float64)
    abs_change = torch.zeros(n, dtype=torch.float64)
    first = prev_top1 = prev_p = None
    for k in range(steps + 1):
        dx, dy = sx + k * ux, sy + k * uy
        logits = _evaluate(model, n, lambda i, dx=dx, dy=dy: view(x[i], dx, dy), batch_size)
        top1 = logits.argmax(1)
        first = top1 if first is None else first
        p = logits.softmax(1).gather(1, first[:, None])[:, 0].double()
        if prev_top1 is not None:
            changes += (top1 != prev_top1).cpu().double()
            abs_change += (p - prev_p).abs().cpu()
        prev_top1, prev_p = top1, p
    n_pairs = n * steps
    return Top1ChangeResult(float(changes.sum()) / n_pairs, float(abs_change.sum()) / n_pairs, n_pairs,
                            changes / steps, abs_change / steps)



def flip_rate(
    model: Model, x: Tensor, *, mode: str, size: Size | None = None, max_distance: int = 4,
    directions: Sequence[str] = ("horizontal", "vertical", "diagonal"),
    base_offsets: Sequence[Sequence[int]] = ((0, 0),), fill: float = 0.0, batch_size: int = 256,
) -> FlipRateResult:
    """Flip rates between pairs of shifted views (Leterme et al.'s mean flip rate).

    Protocol (exact pairs): for every image, base offset s in ``base_offsets``
    (content shifts; the default (0, 0) is the centred window in crop mode and the
    unshifted image otherwise), direction u (horizontal (1, 0), vertical (0, 1),
    diagonal (1, 1)) and distance d = 1..max_distance, the pair is (view at s,
    view at s + d * u); it flips when the two top-1 differ. ``rates[u][d - 1]``
    is the percent of the N * len(base_offsets) pairs that flip; the summaries
    average it with equal weights (see :class:`FlipRateResult`). Each distinct
    shift is evaluated once. Deviation: the papers sample random crop pairs;
    these pairs are deterministic, anchored at ``base_offsets``.

    Args:
        x: images (N, 3, H, W), or the canvas (N, 3, Hs, Ws) in crop mode, which
            must admit every shift s + d * u.
        max_distance: largest pair distance in pixels (ImageNet 8, CIFAR-10 4).
        directions: distinct names among ``horizontal``, ``vertical``, ``diagonal``.
        base_offsets: content shifts (dx, dy) in pixels of the first view of each pair.

    Returns:
        :class:`FlipRateResult` (percentages).
    """
    n = _images(x, "x")
    dmax = _int(max_distance, "max_distance", 1)
    names = list(directions)
    if not names or len(set(names)) != len(names) or any(u not in DIRECTIONS for u in names):
        raise SpecError(
            f"directions must be distinct names among {', '.join(DIRECTIONS)}, got {directions!r}"
        )
    bases = [_pair(b, "each base offset") for b in base_offsets]
    if not bases:
        raise SpecError("base_offsets must hold at least one (dx, dy)")
    view = _view_fn(mode, size, fill, "flip_rate")
    cache: dict[tuple[int, int], Tensor] = {}

    def top1(s: tuple[int, int]) -> Tensor:
        if s not in cache:
            cache[s] = _evaluate(model, n, lambda i: view(x[i], s[0], s[1]), batch_size).argmax(1)
        return cache[s]

    rates: dict[str, list[float]] = {}
    flips = torch.zeros(n, dtype=torch.float64)
    for u in names:
        ux, uy = DIRECTIONS[u]
        rates[u] = []
        for d in range(1, dmax + 1):
            cell = sum((top1(b) != top1((b[0] + d * ux, b[1] + d * uy))).cpu().double() for b in bases)
            flips += cell
            rates[u].append(100.0 * float(cell.sum()) / (n * len(bases)))
    per_direction = {u: sum(r) / dmax for u, r in rates.items()}
    per_distance = {d: sum(rates[u][d - 1] for u in names) / len(names) for d in range(1, dmax + 1)}
    mean = sum(per_direction.values()) / len(names)
    per_image = flips / (len(names) * dmax * len(bases))
    return FlipRateResult(mean, per_direction, per_distance, rates, dmax, n, mode, per_image)


def _mean_flip_rate(value: FlipRateResult | float | str | os.PathLike, what: str) -> float:
    """The mean flip rate (percent) of a result, a number, or a JSON file."""
    if isinstance(value, FlipRateResult):
        return value.mean_flip_rate
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, (str, os.PathLike)):
        raise SpecError(
            f"{what} must be a FlipRateResult, a number or a JSON path, got {type(value).__name__}"
        )
    path = os.fspath(value)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot read the {what} flip-rate file {path!r}: {exc}") from exc
    top = data if isinstance(data, dict) else {}
    metrics = top.get("metrics") if isinstance(top.get("metrics"), dict) else {}
    source = top if "mean_flip_rate" in top else metrics
    if "mean_flip_rate" not in source:
        raise SpecError(
            f"{what} file {path!r} has no 'mean_flip_rate' key at top level or under 'metrics'"
        )
    rate = source["mean_flip_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise SpecError(f"{what} file {path!r}: mean_flip_rate must be a number, got {rate!r}")
    return float(rate)


def normalized_flip_rate(
    result: FlipRateResult | float, reference: FlipRateResult | float | str | os.PathLike
) -> float:
    """Mean flip rate normalised so that the reference model scores 100 (lower is better).

    Args:
        result: the model's :class:`FlipRateResult`, or its mean flip rate (percent).
        reference: the reference model's result, its mean flip rate (percent), or a
            JSON file with ``mean_flip_rate`` at top level or under ``"metrics"``.

    Returns:
        ``100 * mean_flip_rate(result) / mean_flip_rate(reference)``.

    Raises:
        SpecError: unreadable file, missing key, a non-number, or a reference mean
            flip rate that is not positive and finite.
    """
    if isinstance(result, (str, os.PathLike)):
        raise SpecError("result must be a FlipRateResult or a number, not a path")
    value, ref = _mean_flip_rate(result, "result"), _mean_flip_rate(reference, "reference")
    if not math.isfinite(ref) or ref <= 0:
        raise SpecError(f"reference mean flip rate must be positive and finite, got {ref}")
    return 100.0 * value / ref



def accuracy_vs_radius(first_fooled_radius: Sequence[int | None], max_radius: int) -> list[float]:
    """Worst-case shift accuracy against the Chebyshev radius K of the shift box.

    Args:
        first_fooled_radius: per image, the smallest radius r (px) at which some shift
            with ``max(|dx|, |dy|) = r`` misclassifies it; 0 = wrong unshifted;
            ``None`` = never fooled within the evaluated set.
        max_radius: largest K in pixels.

    Returns:
        ``max_radius + 1`` fractions: for K = 0..max_radius, the fraction of images
        with r None or r > K (non-increasing in K).
    """
    k_max, radii = _int(max_radius, "max_radius"), list(first_fooled_radius)
    if not radii:
        raise ShapeError("first_fooled_radius must hold at least one image")
    for r in radii:
        if r is not None and (not _is_int(r) or r < 0):
            raise SpecError(f"each radius must be None or an int >= 0, got {r!r}")
    return [sum(1 for r in radii if r is None or r > k) / len(radii) for k in range(k_max + 1)]
