"""Tests of shiftattack.metrics.stats against known cases and independent implementations (scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from shiftattack.errors import ShapeError, SpecError
from shiftattack.metrics.stats import (
    Interval,
    binomial_interval,
    contrast,
    difference,
    mcnemar,
    mean_sd,
    paired_bootstrap,
    rule_text,
    seed_contrast,
    verdict,
)

# ----------------------------------------------------------------------------- exact binomial


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (3, 10), (437, 500), (1, 2)])
def test_binomial_interval_matches_scipy_exact(k, n):
    ours = binomial_interval(k, n)
    ref = sp.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert ours.low == pytest.approx(ref.low, abs=1e-12)
    assert ours.high == pytest.approx(ref.high, abs=1e-12)
    assert ours.estimate == k / n


def test_binomial_interval_closed_forms():
    # k = 0: upper = 1 - (alpha/2)^(1/n); k = n: lower = (alpha/2)^(1/n)
    assert binomial_interval(0, 10).high == pytest.approx(1 - 0.025 ** (1 / 10))
    assert binomial_interval(0, 10).low == 0.0
    assert binomial_interval(20, 20).low == pytest.approx(0.025 ** (1 / 20))
    assert binomial_interval(20, 20, level=0.9).low == pytest.approx(0.05 ** (1 / 20))
    with pytest.raises(SpecError, match="successes"):
        binomial_interval(11, 10)
    with pytest.raises(SpecError, match="level"):
        binomial_interval(1, 10, level=95)


# ----------------------------------------------------------------------------- McNemar


def test_mcnemar_exact_by_hand():
    a = [1] * 6 + [0] * 4 + [1] * 5
    b = [0] * 6 + [0] * 4 + [1] * 5
    res = mcnemar(a, b)
    assert (res.a_only, res.b_only) == (6, 0)
    assert res.p_value == pytest.approx(2 * 0.5 ** 6)  # 0.03125
    assert mcnemar(b, a).p_value == res.p_value
    assert mcnemar([1, 0, 1], [1, 0, 1]).p_value == 1.0


def test_mcnemar_matches_binomtest_on_random_data():
    rng = np.random.default_rng(3)
    a, b = rng.random(400) < 0.8, rng.random(400) < 0.75
    res = mcnemar(a, b)
    n01, n10 = int((a & ~b).sum()), int((~a & b).sum())
    assert (res.a_only, res.b_only) == (n01, n10)
    assert res.p_value == pytest.approx(sp.binomtest(n01, n01 + n10, 0.5).pvalue)
    with pytest.raises(SpecError, match="0/1"):
        mcnemar([0.5, 1], [1, 1])
    with pytest.raises(ShapeError, match="different images"):
        mcnemar([1, 0], [1, 0, 1])


# ----------------------------------------------------------------------------- contrasts


def test_one_seed_difference_is_the_paired_t_interval():
    rng = np.random.default_rng(0)
    a = (rng.random(500) < 0.85).astype(float)
    b = np.where(rng.random(500) < 0.9, a, 1 - a)
    d = a - b
    q = sp.t.ppf(0.975, len(d) - 1)
    half = q * d.std(ddof=1) / math.sqrt(len(d))
    res = difference(a, b)
    assert res.method == "images"
    assert res.estimate == pytest.approx(d.mean())
    assert res.low == pytest.approx(d.mean() - half)
    assert res.high == pytest.approx(d.mean() + half)


def test_seed_contrast_is_welch():
    a, b = [1.61, 1.58, 1.66], [1.55, 1.52, 1.57, 1.50]
    res = seed_contrast({"a": a, "b": b}, {"a": 1, "b": -1})
    ref = sp.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (res.low, res.high) == pytest.approx((ref.low, ref.high))
    one = seed_contrast({"a": [1.6], "b": b}, {"a": 1, "b": -1})
    assert one.low == -math.inf and one.high == math.inf
    assert verdict(one, "superiority") == "inconclusive"


def test_no_image_variance_reduces_to_welch_over_seeds():
    # every image of a seed scores the seed's accuracy: the image term is zero, only seeds vary
    acc_a, acc_b = np.array([0.86, 0.87, 0.855]), np.array([0.84, 0.85, 0.842, 0.838])
    a = np.repeat(acc_a[:, None], 50, 1)
    b = np.repeat(acc_b[:, None], 50, 1)
    res = difference(a, b)
    ref = sp.ttest_ind(acc_a, acc_b, equal_var=False).confidence_interval(0.95)
    assert res.estimate == pytest.approx(acc_a.mean() - acc_b.mean())
    assert res.low == pytest.approx(ref.low)
    assert res.high == pytest.approx(ref.high)
    assert res.n_seeds == (3, 4) and res.method == "images+seeds"


def _simulate(rng, n_img, seeds, effect, seed_sd):
    """Per-image 0/1 correctness of two models sharing image difficulty, with seed effects."""
    difficulty = rng.normal(0, 1.5, n_img)
    out = []
    for shift in (effect, 0.0):
        rows = []
        for _ in range(seeds):
            logit = 1.7 + shift + difficulty + rng.normal(0, seed_sd)
            rows.append((rng.random(n_img) < 1 / (1 + np.exp(-logit))).astype(float))
        out.append(np.array(rows))
    return out


def test_contrast_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(11)
    n_img, seeds, effect, seed_sd = 400, 3, 0.15, 0.08
    # the truth: the population difference of expected accuracies, by a large Monte Carlo
    big = rng.normal(0, 1.5, 400_000)
    truth = float(np.mean(1 / (1 + np.exp(-(1.7 + effect + big))) - 1 / (1 + np.exp(-(1.7 + big)))))
    hits = 0
    reps = 300
    for _ in range(reps):
        a, b = _simulate(rng, n_img, seeds, effect, seed_sd)
        res = difference(a, b)
        hits += res.low <= truth <= res.high
    # conservative by design (the image term also holds training noise): at least nominal, not absurd
    assert 0.92 <= hits / reps <= 0.995


def test_ratio_contrast_matches_bootstrap_and_plain_mean():
    rng = np.random.default_rng(5)
    correct = (rng.random((1, 3000)) < 0.85).astype(float)
    survive = correct * (rng.random((1, 3000)) < 0.7)
    correct_b = (rng.random((1, 3000)) < 0.85).astype(float)
    survive_b = correct_b * (rng.random((1, 3000)) < 0.6)
    res = contrast({"a": survive, "b": survive_b}, {"a": 1, "b": -1},
                   denominators={"a": correct, "b": correct_b})
    ratio = lambda s, c: s.sum() / c.sum()  # noqa: E731
    assert res.estimate == pytest.approx(ratio(survive, correct) - ratio(survive_b, correct_b))
    # an independent check of the delta-method SE: bootstrap the ratio difference over images
    boot = []
    for _ in range(2000):
        i = rng.integers(0, 3000, 3000)
        boot.append(ratio(survive[0, i], correct[0, i]) - ratio(survive_b[0, i], correct_b[0, i]))
    assert res.se == pytest.approx(np.std(boot, ddof=1), rel=0.1)
    # all denominators 1: the ratio is the mean
    plain = contrast({"a": survive}, {"a": 1.0})
    ones = contrast({"a": survive}, {"a": 1.0}, denominators={"a": np.ones_like(survive)})
    assert (plain.low, plain.high) == pytest.approx((ones.low, ones.high))


def test_slope_contrast_of_a_known_trend():
    sizes = [1, 2, 3, 5, 7]
    mean = sum(sizes) / 5
    ss = sum((f - mean) ** 2 for f in sizes)
    weights = {str(f): (f - mean) / ss for f in sizes}
    values = {str(f): np.tile(np.r_[np.zeros(50), np.ones(50)] * 0 + 0.5 + 0.01 * f, (2, 1)) for f in sizes}
    res = contrast(values, weights)
    assert res.estimate == pytest.approx(0.01)  # the slope per unit of filter size
    assert res.low == res.high == pytest.approx(0.01)


def test_paired_bootstrap_agrees_with_the_t_interval():
    rng = np.random.default_rng(2)
    a = (rng.random(2000) < 0.8).astype(float)
    b = np.where(rng.random(2000) < 0.85, a, rng.random(2000) < 0.7).astype(float)
    boot = paired_bootstrap(a, b, n_resamples=4000, seed=1)
    t = difference(a, b)
    assert boot.low == pytest.approx(t.low, abs=0.004)
    assert boot.high == pytest.approx(t.high, abs=0.004)
    assert paired_bootstrap(a, b, n_resamples=500, seed=7) == paired_bootstrap(a, b, n_resamples=500, seed=7)


def test_contrast_errors():
    with pytest.raises(ShapeError, match="same images"):
        difference(np.ones((2, 10)), np.ones((2, 11)))
    with pytest.raises(SpecError, match="no values for b"):
        contrast({"a": [1, 0]}, {"a": 1, "b": -1})
    with pytest.raises(SpecError, match="NaN"):
        difference([1.0, float("nan")], [1.0, 0.0])
    with pytest.raises(SpecError, match="sum to zero"):
        contrast({"a": [[0, 0]]}, {"a": 1}, denominators={"a": [[0, 0]]})


def test_mean_sd():
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0, 3)
    assert mean_sd([4.0]) == (4.0, None, 1)


# ----------------------------------------------------------------------------- verdicts


def iv(lo, hi):
    return Interval((lo + hi) / 2, lo, hi, 0.95, "test")


@pytest.mark.parametrize("kind,direction,margin,lo,hi,expected", [
    ("superiority", 1, 0, 0.1, 2, "reproduced"),
    ("superiority", 1, 0, -0.1, 2, "inconclusive"),
    ("superiority", 1, 0, -3, -0.2, "contradicted"),
    ("superiority", -1, 0, -3, -0.2, "reproduced"),
    ("superiority", -1, 0, 0.2, 3, "contradicted"),
    ("superiority", 1, 1.0, 0.5, 2, "inconclusive"),
    ("noninferiority", 1, 0.5, -0.4, 1, "reproduced"),
    ("noninferiority", 1, 0.5, -0.6, 1, "inconclusive"),
    ("noninferiority", 1, 0.5, -2, -0.6, "contradicted"),
    ("noninferiority", -1, 0.5, -2, 0.4, "reproduced"),
    ("equivalence", 1, 1.0, -0.5, 0.9, "reproduced"),
    ("equivalence", 1, 1.0, -0.5, 1.5, "inconclusive"),
    ("equivalence", 1, 1.0, 1.2, 3, "contradicted"),
    ("equivalence", -1, 1.0, -3, -1.1, "contradicted"),
])
def test_verdict_table(kind, direction, margin, lo, hi, expected):
    assert verdict(iv(lo, hi), kind, direction=direction, margin=margin) == expected


def test_threshold_verdicts_and_rule_texts():
    assert verdict(iv(5.5, 9), "threshold", threshold=5.0) == "reproduced"
    assert verdict(iv(4, 9), "threshold", threshold=5.0) == "inconclusive"
    assert verdict(iv(1, 4), "threshold", threshold=5.0) == "contradicted"
    assert verdict(iv(1, 4), "threshold", direction=-1, threshold=5.0) == "reproduced"
    assert rule_text("noninferiority", margin=0.5, unit=" pt") == (
        "reproduced if the whole interval is > -0.5 pt; contradicted if it is all < -0.5 pt")
    assert rule_text("superiority", direction=-1) == (
        "reproduced if the whole interval is < 0; contradicted if it is all > 0")
    with pytest.raises(SpecError, match="margin > 0"):
        verdict(iv(0, 1), "equivalence")
    with pytest.raises(SpecError, match="unknown rule kind"):
        verdict(iv(0, 1), "better")
    with pytest.raises(SpecError, match="threshold"):
        verdict(iv(0, 1), "threshold")
