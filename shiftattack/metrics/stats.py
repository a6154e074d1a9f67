"""Intervals and three-valued verdicts for comparing models measured on the same images.

Two models evaluated on the same test images are *paired*: their per-image results are
correlated (an easy image is easy for both), and the interval of their difference must use
the per-image differences, not two separate intervals. When each model is also trained with
several seeds, training randomness adds a second source of variation. This module gives:

* :func:`binomial_interval`: the exact (Clopper-Pearson) interval of one accuracy;
* :func:`mcnemar`: the exact McNemar test of two models' accuracies on the same images;
* :func:`paired_bootstrap`: a percentile bootstrap interval of any paired statistic (one seed);
* :func:`contrast`: the interval of a linear contrast ``sum_k w_k m_k`` of models' metrics
  (a difference: weights +1 / -1; a trend: least-squares slope weights), each model given as
  per-image values for every seed, optionally a ratio (e.g. survival among initially correct
  images); the image and the seed variance are both counted;
* :func:`seed_contrast`: the same from one value per seed (Welch), for metrics of the model
  itself (e.g. its filters' total variation);
* :func:`mean_sd`: mean and standard deviation over seeds;
* :func:`verdict`: *reproduced* / *contradicted* / *inconclusive* from an interval and a rule
  fixed in advance (superiority, non-inferiority, equivalence, threshold), and
  :func:`rule_text`, the rule in words.

The contrast interval (``method="images+seeds"``): with ``r_ks`` model k's metric for seed s
(a mean over images, or a ratio of sums), ``m_k`` its mean over seeds and ``C = sum w_k m_k``,

    SE^2 = var_i(z_i) / N  +  sum_k w_k^2 var_s(r_ks) / S_k

where ``z_i = sum_k w_k * mean_s u_ksi`` and ``u_ksi`` is image i's linearised influence on
``r_ks`` (``x - r`` for a mean; ``(x - r d) / mean(d)`` for a ratio ``sum x / sum d``). The
first term is the sampling variance of the test images (shared by all seeds), the second the
training variance (seeds of different models are independent). The interval is
``C +- t_(1 - alpha/2, df) SE`` with Welch-Satterthwaite degrees of freedom; with one seed per
model the seed term cannot be estimated and the interval covers the images only (``method
"images"``). The image term includes some training noise too, so the interval errs wide.

Inputs are array-likes (lists, numpy arrays or CPU tensors); results are plain floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as _sp

from shiftattack.errors import ShapeError, SpecError

__all__ = ["Interval", "McNemarResult", "VERDICTS", "KINDS", "binomial_interval", "mcnemar",
           "paired_bootstrap", "contrast", "seed_contrast", "difference", "mean_sd", "verdict", "rule_text"]

VERDICTS = ("reproduced", "contradicted", "inconclusive")
KINDS = ("superiority", "noninferiority", "equivalence", "threshold")


@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided confidence interval ``[low, high]`` at ``level``.

    ``se`` and ``df``: standard error and degrees of freedom where the method has them;
    ``n_images`` and ``n_seeds`` (per model): what it was computed from.
    """

    estimate: float
    low: float
    high: float
    level: float
    method: str
    se: float | None = None
    df: float | None = None
    n_images: int | None = None
    n_seeds: tuple[int, ...] | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        out["n_seeds"] = None if self.n_seeds is None else list(self.n_seeds)
        return out

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (e.g. fractions times 100 = percentage points)."""
        lo, hi = sorted((self.low * factor, self.high * factor))
        return Interval(self.estimate * factor, lo, hi, self.level, self.method,
                        None if self.se is None else self.se * abs(factor), self.df, self.n_images, self.n_seeds)


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test: ``a_only`` images only model A gets right, ``b_only`` only B; two-sided p."""

    a_only: int
    b_only: int
    p_value: float


def _level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise SpecError(f"level must be in (0, 1), got {level!r}")
    return float(level)


def binomial_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Exact Clopper-Pearson interval of a proportion ``successes / n`` (fractions).

    Examples:
        >>> round(binomial_interval(0, 10).high, 4)
        0.3085
    """
    level = _level(level)
    k, n = int(successes), int(n)
    if n < 1 or not 0 <= k <= n:
        raise SpecError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(_sp.beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(_sp.beta.ppf(1 - a, k + 1, n - k))
    return Interval(k / n, low, high, level, "clopper-pearson", n_images=n)


def _binary(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ShapeError(f"{name} must be one value per image (1-D), got shape {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise SpecError(f"{name} must hold 0/1 (or booleans) per image")
    return a.astype(bool)


def mcnemar(a_correct, b_correct) -> McNemarResult:
    """Exact two-sided McNemar test of two models' per-image correctness on the same images."""
    a, b = _binary(a_correct, "a_correct"), _binary(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ShapeError(f"a_correct and b_correct cover different images: {a.shape} vs {b.shape}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    p = 1.0 if n == 0 else float(_sp.binomtest(a_only, n, 0.5).pvalue)
    return McNemarResult(a_only, b_only, p)


def paired_bootstrap(a, b, *, statistic: Callable[[np.ndarray], float] = np.mean, n_resamples: int = 10000,
                     level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic(a) - statistic(b)``, images resampled jointly.

    Args:
        a, b: one value per image (N,), the same images in the same order.
        statistic: maps a resampled (N,) array to a number (default the mean).
        n_resamples: bootstrap replicates; seed: their generator's seed (deterministic).
    """
    level = _level(level)
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ShapeError(f"a and b must be paired per-image values of equal length >= 2, got {x.shape}, {y.shape}")
    rng = np.random.default_rng(seed)
    reps = np.empty(int(n_resamples))
    for j in range(len(reps)):
        idx = rng.integers(0, len(x), len(x))
        reps[j] = statistic(x[idx]) - statistic(y[idx])
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(statistic(x) - statistic(y)), float(lo), float(hi), level, "paired-bootstrap",
                    se=float(reps.std(ddof=1)), n_images=len(x), n_seeds=(1, 1))


def _seed_matrix(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[1] < 2 or v.shape[0] < 1:
        raise ShapeError(f"{name} must be (seeds, images) with at least 2 images, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise SpecError(f"{name} holds NaN or infinite values")
    return v


def contrast(values: Mapping[str, object], weights: Mapping[str, float], *,
             denominators: Mapping[str, object] | None = None, level: float = 0.95) -> Interval:
    """Interval of ``sum_k weights[k] * m_k`` (see the module docstring for the formula).

    Args:
        values: model name -> per-image values, (S_k, N) for S_k seeds (or (N,) for one seed); every
            model on the same N images in the same order.
        weights: model name -> weight; every weighted model must be in ``values``.
        denominators: model name -> (S_k, N) per-image denominators: the metric is then the ratio
            ``sum_i x / sum_i d`` per seed (e.g. survivors among the initially correct images).
        level: confidence level.

    Returns:
        :class:`Interval` in the units of ``values`` (method ``images+seeds``, or ``images`` when
        every model has one seed).
    """
    level = _level(level)
    names = [k for k, w in weights.items() if w != 0]
    if not names:
        raise SpecError("contrast needs at least one non-zero weight")
    missing = [k for k in names if k not in values]
    if missing:
        raise SpecError(f"no values for {', '.join(missing)} (have {', '.join(values) or 'none'})")
    z, seed_terms, est, n_img, seeds = None, [], 0.0, None, []
    for k in names:
        x = _seed_matrix(values[k], f"values[{k!r}]")
        if n_img is None:
            n_img = x.shape[1]
        elif x.shape[1] != n_img:
            raise ShapeError(f"values[{k!r}] covers {x.shape[1]} images, the others {n_img}: "
                             "a paired contrast needs the same images for every model")
        if denominators is not None and k in denominators:
            d = _seed_matrix(denominators[k], f"denominators[{k!r}]")
            if d.shape != x.shape:
                raise ShapeError(f"denominators[{k!r}] has shape {d.shape}, values {x.shape}")
            dbar = d.mean(1, keepdims=True)
            if (dbar <= 0).any():
                raise SpecError(f"denominators[{k!r}] sum to zero for a seed: the ratio is undefined")
            r = x.sum(1, keepdims=True) / d.sum(1, keepdims=True)
            u = (x - r * d) / dbar
        else:
            r = x.mean(1, keepdims=True)
            u = x - r
        w = float(weights[k])
        est += w * float(r.mean())
        z = w * u.mean(0) if z is None else z + w * u.mean(0)
        s = x.shape[0]
        seeds.append(s)
        if s > 1:
            seed_terms.append((w * w * float(r[:, 0].var(ddof=1)) / s, s - 1))
    img_var = float(z.var(ddof=1)) / n_img
    se2 = img_var + sum(t for t, _ in seed_terms)
    method = "images+seeds" if seed_terms else "images"
    if se2 <= 0:
        return Interval(est, est, est, level, method, 0.0, math.inf, n_img, tuple(seeds))
    denom = img_var ** 2 / (n_img - 1) + sum(t * t / df for t, df in seed_terms)
    df = se2 ** 2 / denom if denom > 0 else math.inf
    q = float(_sp.t.ppf((1 + level) / 2, df)) if math.isfinite(df) else float(_sp.norm.ppf((1 + level) / 2))
    se = math.sqrt(se2)
    return Interval(est, est - q * se, est + q * se, level, method, se, df, n_img, tuple(seeds))


def seed_contrast(values: Mapping[str, Sequence[float]], weights: Mapping[str, float], *,
                  level: float = 0.95) -> Interval:
    """Interval of ``sum_k w_k mean_s(v_ks)`` from one value per seed (nothing paired across models).

    For metrics of the model itself rather than of images (e.g. the mean total variation of its
    filters): Welch's interval, ``SE^2 = sum_k w_k^2 var_s(v_k) / S_k`` with Welch-Satterthwaite
    degrees of freedom. With one seed for every model there is no interval: ``low = -inf``,
    ``high = +inf`` (no verdict can be reached).
    """
    level = _level(level)
    names = [k for k, w in weights.items() if w != 0]
    if not names or any(k not in values for k in names):
        raise SpecError(f"seed_contrast needs values for every weighted model: {', '.join(names) or 'none'}")
    est, terms, seeds = 0.0, [], []
    for k in names:
        v = np.asarray(values[k], dtype=np.float64).ravel()
        if v.size == 0 or not np.isfinite(v).all():
            raise SpecError(f"values[{k!r}] must hold finite numbers, one per seed")
        w = float(weights[k])
        est += w * float(v.mean())
        seeds.append(int(v.size))
        if v.size > 1:
            terms.append((w * w * float(v.var(ddof=1)) / v.size, v.size - 1))
    if len(terms) < len(names):
        return Interval(est, -math.inf, math.inf, level, "seeds (a model has one seed: no interval)",
                        n_seeds=tuple(seeds))
    se2 = sum(t for t, _ in terms)
    if se2 <= 0:
        return Interval(est, est, est, level, "seeds", 0.0, math.inf, n_seeds=tuple(seeds))
    df = se2 ** 2 / sum(t * t / d for t, d in terms)
    q = float(_sp.t.ppf((1 + level) / 2, df))
    se = math.sqrt(se2)
    return Interval(est, est - q * se, est + q * se, level, "seeds", se, df, n_seeds=tuple(seeds))


def difference(a, b, *, level: float = 0.95) -> Interval:
    """``contrast`` of two models, A minus B: per-image values (S_a, N) and (S_b, N)."""
    return contrast({"a": a, "b": b}, {"a": 1.0, "b": -1.0}, level=level)


def mean_sd(values: Sequence[float]) -> tuple[float, float | None, int]:
    """(mean, sample standard deviation or None for one value, count) over seeds."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise SpecError("mean_sd needs at least one value")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None), int(v.size)


def _check_rule(kind: str, direction: int, margin: float, threshold: float | None) -> None:
    if kind not in KINDS:
        raise SpecError(f"unknown rule kind {kind!r}; expected one of {', '.join(KINDS)}")
    if direction not in (1, -1):
        raise SpecError(f"direction must be +1 or -1, got {direction!r}")
    if margin < 0:
        raise SpecError(f"margin must be >= 0, got {margin!r}")
    if kind == "threshold" and threshold is None:
        raise SpecError("a threshold rule needs its threshold")


def verdict(interval: Interval, kind: str, *, direction: int = 1, margin: float = 0.0,
            threshold: float | None = None) -> str:
    """``reproduced``, ``contradicted`` or ``inconclusive`` for ``interval`` under a rule fixed in advance.

    Args:
        kind: ``superiority`` (the effect lies beyond ``margin`` in ``direction``),
            ``noninferiority`` (the effect is no worse than ``-margin`` in ``direction``),
            ``equivalence`` (the effect lies within ``(-margin, margin)``), or ``threshold``
            (the metric itself lies beyond ``threshold`` in ``direction``).
        direction: +1 when the claim says the effect is positive, -1 when negative.
        margin: in the interval's units, >= 0.
    """
    _check_rule(kind, direction, margin, threshold)
    lo, hi = (interval.low, interval.high) if direction == 1 else (-interval.high, -interval.low)
    if kind == "threshold":
        t = threshold * direction
        return "reproduced" if lo > t else "contradicted" if hi < t else "inconclusive"
    if kind == "superiority":
        return "reproduced" if lo > margin else "contradicted" if hi < -margin else "inconclusive"
    if kind == "noninferiority":
        return "reproduced" if lo > -margin else "contradicted" if hi < -margin else "inconclusive"
    if not margin > 0:
        raise SpecError("an equivalence rule needs a margin > 0")
    if -margin < lo and hi < margin:
        return "reproduced"
    return "contradicted" if (lo >= margin or hi <= -margin) else "inconclusive"


def rule_text(kind: str, *, direction: int = 1, margin: float = 0.0, threshold: float | None = None,
              unit: str = "") -> str:
    """The rule of :func:`verdict` in words, to print beside the verdict."""
    _check_rule(kind, direction, margin, threshold)
    sign = ">" if direction == 1 else "<"
    other = "<" if direction == 1 else ">"
    m = f"{margin:.3g}{unit}"
    if kind == "threshold":
        t = f"{threshold:.3g}{unit}"
        return f"reproduced if the whole interval is {sign} {t}; contradicted if it is all {other} {t}"
    if kind == "superiority":
        pos, neg = (m, f"-{m}") if margin else ("0", "0")
        good, bad = (pos, neg) if direction == 1 else (neg, pos)
        return f"reproduced if the whole interval is {sign} {good}; contradicted if it is all {other} {bad}"
    if kind == "noninferiority":
        lim = f"-{m}" if direction == 1 else m
        return f"reproduced if the whole interval is {sign} {lim}; contradicted if it is all {other} {lim}"
    return f"reproduced if the whole interval lies within +-{m}; contradicted if it lies entirely outside"
