"""Corruption-benchmark metrics (shiftattack.metrics.corruption) against hand computations and the published
evaluation code's rules (reference/METRICS.md "ImageNet-C", "ImageNet-P"; CORRUPTIONS.md section 6).

The references here are written independently of the module: the paper's double-sum formula for the top-5
distance as plain Python loops, and the pairing loops of ``ImageNet-P/test.py`` (``flip_prob``,
``ranking_dist`` with SciPy's ``rankdata``) transcribed in NumPy.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftattack.corruptions._registry import ORDER
from shiftattack.errors import ModelError, ShapeError, SpecError
from shiftattack.metrics import corruption as cm

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------------
# Top-5 distance
# ------------------------------------------------------------------------------------------------------

K = 10  # classes in the worked examples; a sequence continues as the identity after what is written


def sigma_seq(*head: int, last: int | None = None) -> list[int]:
    """sigma(1..K) (1-based) from its written head, continued as the identity (``last`` goes at K)."""
    rest = [v for v in range(1, K + 1) if v not in head and v != last]
    seq = list(head) + rest
    if last is not None:
        seq = seq + [last]
    assert sorted(seq) == list(range(1, K + 1))
    return seq


# The paper's Appendix C examples (METRICS.md), d'(sigma) = d(identity, sigma). Hand computation with
# c(k) = min(k - 1, 5): term_i = |c(i) - c(sigma(i))| = #{j : min(i, sigma(i)) < j <= max(i, sigma(i)),
# 2 <= j <= 6}, summed over i = 1..5.
WORKED = [
    # identity: every term 0                                                              -> 0
    (sigma_seq(1, 2, 3, 4, 5), 0),
    # (2,1,3,...): i=1 (1->2): j=2 -> 1; i=2 (2->1): j=2 -> 1                               -> 2
    (sigma_seq(2, 1, 3), 2),
    # (3,1,2,...): i=1 (1->3): j=2,3 -> 2; i=2 (2->1): j=2 -> 1; i=3 (3->2): j=3 -> 1         -> 4
    (sigma_seq(3, 1, 2), 4),
    # (2,3,4,5,6,...,1): i=1..5 (i->i+1): j=i+1 in 2..6 -> 1 each; sigma(K)=1 is not summed   -> 5
    (sigma_seq(2, 3, 4, 5, 6, last=1), 5),
    # (1,2,3,4,6,5,...): i=5 (5->6): j=6 -> 1                                               -> 1
    (sigma_seq(1, 2, 3, 4, 6, 5), 1),
    # (1,2,3,4,6,7,5,8,...): i=5 (5->6): j=6 -> 1; i=6, 7 are not summed                    -> 1
    (sigma_seq(1, 2, 3, 4, 6, 7, 5, 8), 1),
    # (1,2,3,5,6,4,...): i=4 (4->5): j=5 -> 1; i=5 (5->6): j=6 -> 1                          -> 2
    (sigma_seq(1, 2, 3, 5, 6, 4), 2),
    # (5,4,3,2,1,...): i=1 (1->5): j=2..5 -> 4; i=2 (2->4): j=3,4 -> 2; i=3: 0;
    #                  i=4 (4->2): j=3,4 -> 2; i=5 (5->1): j=2..5 -> 4                       -> 12
    (sigma_seq(5, 4, 3, 2, 1, 6), 12),
]


def paper_d(ranks_a: list[int], ranks_b: list[int]) -> int:
    """The paper's formula as written, with sigma(i) = 1 + position in b of a's i-th class (slow Python)."""
    d = 0
    for i in range(1, min(5, len(ranks_a)) + 1):
        s = ranks_b.index(ranks_a[i - 1]) + 1
        for j in range(min(i, s) + 1, max(i, s) + 1):
            if 1 <= j - 1 <= 5:
                d += 1
    return d


@pytest.mark.parametrize(("sigma", "expected"), WORKED)
def test_top5_distance_worked_examples(sigma, expected):
    identity = torch.arange(K)
    s = torch.tensor(sigma) - 1
    # sigma(i) - 1 is the position in pi' of pi's i-th class. With pi = sigma (as a ranking) and
    # pi' = identity, or with pi = identity and pi' = sigma^-1, that position is sigma(i) - 1.
    assert int(cm.top5_distance(s, identity)) == expected
    assert int(cm.top5_distance(identity, torch.argsort(s))) == expected
    assert paper_d(s.tolist(), identity.tolist()) == expected


def test_top5_distance_is_batched_and_asymmetric():
    sig = torch.stack([torch.tensor(s) - 1 for s, _ in WORKED])
    ident = torch.arange(K).expand_as(sig)
    d = cm.top5_distance(sig.view(2, 4, K), ident.reshape(2, 4, K))
    assert d.shape == (2, 4) and d.dtype == torch.long
    assert d.flatten().tolist() == [e for _, e in WORKED]
    # (2,3,4,5,6,...,1) the other way round: class 1 drops from position 1 to K (5), four others move up 1
    shifted = torch.tensor(sigma_seq(2, 3, 4, 5, 6, last=1)) - 1
    assert int(cm.top5_distance(torch.arange(K), shifted)) == 9 == paper_d(list(range(K)), shifted.tolist())


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12).flatmap(lambda k: st.tuples(st.permutations(range(k)), st.permutations(range(k)))))
def test_top5_distance_matches_the_paper_formula(pair):
    a, b = (list(p) for p in pair)
    assert int(cm.top5_distance(torch.tensor(a), torch.tensor(b))) == paper_d(a, b)


def script_d(logits_a: np.ndarray, logits_b: np.ndarray) -> int:
    """``ImageNet-P/test.py``'s dist(): rank vectors by rankdata(-logits, 'ordinal'), sigma =
    rank2[argsort(rank1)], d = sum |cum[:5] - cum[sigma - 1][:5]| with cum the cumulative sum of
    (0, 1, 1, 1, 1, 1, 0, ...)."""
    rankdata = pytest.importorskip("scipy.stats").rankdata
    k = logits_a.shape[-1]
    r1, r2 = rankdata(-logits_a, method="ordinal"), rankdata(-logits_b, method="ordinal")
    sigma = r2[np.argsort(r1)]
    cum = np.cumsum(np.asarray([0] + [1] * 5 + [0] * max(0, k - 6)))
    return int(np.sum(np.abs(cum[:5] - cum[sigma - 1][:5])))


def tied_logits(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """(n, k) logits, a quarter each: few distinct values (ties everywhere, also across the 5th place);
    distinct values; the two largest equal (a tie inside the top 5); the 5th and 6th largest equal."""
    q = n // 4
    x = torch.randn(n, k, generator=g, dtype=torch.float64)
    x[:q] = torch.randint(0, 6, (q, k), generator=g).double()
    order = x.argsort(-1, descending=True)
    rows = torch.arange(2 * q, 3 * q)
    x[rows, order[rows, 1]] = x[rows, order[rows, 0]]
    rows = torch.arange(3 * q, n)
    x[rows, order[rows, 5]] = x[rows, order[rows, 4]]
    return x


@pytest.mark.parametrize("k", [6, 10, 11, 100, 1000])
def test_top5_distance_from_logits_matches_the_script_with_ties(k):
    g = torch.Generator().manual_seed(k)
    # ties rank the lower class index first, in the script (rankdata 'ordinal') and here
    a = tied_logits(48, k, g)
    b = a.clone()
    b[::2] = tied_logits(24, k, g)
    b[1::2] += torch.randint(-1, 2, (24, k), generator=g).double() * (torch.rand(24, k, generator=g) < 0.05)
    d = cm.top5_distance_from_logits(a, b)
    ref = [script_d(x, y) for x, y in zip(a.numpy(), b.numpy(), strict=True)]
    assert d.tolist() == ref
    assert any(r > 0 for r in ref) and any(r == 0 for r in ref)
    ranks = lambda x: torch.sort(x, dim=-1, descending=True, stable=True).indices  # noqa: E731
    assert torch.equal(cm.top5_distance(ranks(a), ranks(b)), d)
    assert torch.equal(
        cm.top5_distance_from_logits(a.float(), b.float()),
        cm.top5_distance(ranks(a.float()), ranks(b.float())),
    )


def test_top5_distance_errors():
    with pytest.raises(ShapeError, match="one shape"):
        cm.top5_distance(torch.arange(6), torch.arange(7))
    with pytest.raises(ShapeError, match="integer"):
        cm.top5_distance(torch.arange(6.0), torch.arange(6.0))
    with pytest.raises(SpecError, match="permutation"):
        cm.top5_distance(torch.tensor([0, 0, 1]), torch.arange(3))
    with pytest.raises(ShapeError, match="floating-point"):
        cm.top5_distance_from_logits(torch.arange(6), torch.arange(6))
    with pytest.raises(ModelError, match="NaN"):
        cm.top5_distance_from_logits(torch.tensor([0.0, math.nan]), torch.zeros(2))


# ------------------------------------------------------------------------------------------------------
# Pairing rule: flip probability and uT5D over sequences
# ------------------------------------------------------------------------------------------------------


def test_flip_pairs_by_hand_noise_vs_consecutive():
    preds = torch.tensor([[0, 1, 1, 1, 1, 1]])
    # consecutive: (0,1) flips, (1,2) (2,3) (3,4) (4,5) do not               -> 1 of 5
    assert cm.flip_counts(preds, noise=False) == (1, 5)
    # noise: (0,1) ... (0,5) all compare class 0 with class 1                 -> 5 of 5
    assert cm.flip_counts(preds, noise=True) == (5, 5)
    assert cm.flip_probability(preds, noise=False) == pytest.approx(0.2)
    assert cm.flip_probability(preds, noise=True) == 1.0


def test_flip_pairs_by_hand_difficulty_2_and_3():
    alt = torch.tensor([[5, 7, 5, 7, 5, 7]])
    assert cm.flip_counts(alt, noise=False, difficulty=1) == (5, 5)  # every neighbour differs
    # d=2: chains (0,2,4) = 5,5,5 and (1,3,5) = 7,7,7; pairs (0,2) (1,3) (2,4) (3,5)  -> 0 of 4
    assert cm.flip_counts(alt, noise=False, difficulty=2) == (0, 4)
    # d=3: pairs (0,3) 5/7, (1,4) 7/5, (2,5) 5/7                                    -> 3 of 3
    assert cm.flip_counts(alt, noise=False, difficulty=3) == (3, 3)
    # noise ignores the difficulty: (0,j), j=1..5: 7,5,7,5,7 against 5              -> 3 of 5
    for d in (1, 2, 3):
        assert cm.flip_counts(alt, noise=True, difficulty=d) == (3, 5)
    cyc = torch.tensor([[1, 2, 3, 1, 2, 3, 1]])
    # d=3: (0,3) (1,4) (2,5) (3,6) all equal                                         -> 0 of 4
    assert cm.flip_counts(cyc, noise=False, difficulty=3) == (0, 4)
    # d=2: (0,2) 1/3, (1,3) 2/1, (2,4) 3/2, (3,5) 1/3, (4,6) 2/1                      -> 5 of 5
    assert cm.flip_counts(cyc, noise=False, difficulty=2) == (5, 5)
    # two sequences (same T = 6) pool their pairs; each has T - d = 4 at d=2
    both = torch.tensor([[5, 7, 5, 7, 5, 7], [1, 2, 3, 1, 2, 3]])
    # second at d=2: (0,2) 1/3, (1,3) 2/1, (2,4) 3/2, (3,5) 1/3 -> 4 of 4; total (0 + 4) of (4 + 4)
    assert cm.flip_counts(both, noise=False, difficulty=2) == (4, 8)
    assert cm.flip_probability(both, noise=False, difficulty=2) == 0.5


def script_flip_prob(preds: np.ndarray, noise: bool, difficulty: int) -> float:
    """``flip_prob`` of ``ImageNet-P/test.py``: per sequence, walk each of the ``step`` chains."""
    step = 1 if noise else difficulty
    result = 0.0
    for vid in preds:
        flips = []
        for i in range(step):
            prev = vid[i]
            for p in vid[i::step][1:]:
                flips.append(int(prev != p))
                if not noise:
                    prev = p
        result += np.mean(flips) / len(preds)
    return result


def script_t5d(logits: np.ndarray, noise: bool, difficulty: int) -> float:
    """``ranking_dist(mode='top5')`` of ``ImageNet-P/test.py`` on the frames' logits."""
    step = 1 if noise else difficulty
    result = 0.0
    for vid in logits:
        ds = []
        for i in range(step):
            first = vid[i]
            for frame in vid[i::step][1:]:
                ds.append(script_d(first, frame))
                if not noise:
                    first = frame
        result += np.mean(ds) / len(logits)
    return result


@pytest.mark.parametrize("noise", [False, True])
@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_sequence_metrics_match_the_script_loops(noise, difficulty):
    g = torch.Generator().manual_seed(10 * difficulty + noise)
    n, t, k = 5, 11, 12
    # a random walk of logits, so that neighbouring frames are similar and far ones less so
    logits = (
        torch.randn(n, 1, k, generator=g) * 2 + 0.6 * torch.randn(n, t, k, generator=g).cumsum(1)
    ).double()
    preds = logits.argmax(-1)
    fp = cm.flip_probability(preds, noise=noise, difficulty=difficulty)
    assert fp == pytest.approx(script_flip_prob(preds.numpy(), noise, difficulty), abs=1e-12)
    ut5d = cm.unnormalized_t5d(logits, noise=noise, difficulty=difficulty)
    assert ut5d == pytest.approx(script_t5d(logits.numpy(), noise, difficulty), abs=1e-12)
    assert 0 < fp < 1 and ut5d > 0
    ranks = torch.sort(logits, dim=-1, descending=True, stable=True).indices
    assert cm.unnormalized_t5d(ranks, noise=noise, difficulty=difficulty) == ut5d
    # accumulating over batches of sequences gives the same pooled numbers
    parts = [cm.t5d_sums(logits[s], noise=noise, difficulty=difficulty) for s in (slice(0, 2), slice(2, n))]
    flips = [cm.flip_counts(preds[s], noise=noise, difficulty=difficulty) for s in (slice(0, 2), slice(2, n))]
    assert sum(p[0] for p in parts) / sum(p[1] for p in parts) == pytest.approx(ut5d, abs=1e-12)
    assert sum(f[0] for f in flips) / sum(f[1] for f in flips) == pytest.approx(fp, abs=1e-12)
    assert flips[0][1] == 2 * ((t - 1) if noise else (t - difficulty))


def test_t5d_by_hand():
    ident = list(range(6))
    swap = [1, 0, 2, 3, 4, 5]
    ranks = torch.tensor([[ident, swap, ident]])  # (1, 3, 6)
    # consecutive: d(id, swap) = 2 (worked example (2,1,3,...)), d(swap, id) = 2        -> 4 over 2 pairs
    assert cm.t5d_sums(ranks, noise=False) == (4, 2)
    # noise: d(frame 0, frame 1) = 2, d(frame 0, frame 2) = 0                           -> 2 over 2 pairs
    assert cm.t5d_sums(ranks, noise=True) == (2, 2)
    assert cm.unnormalized_t5d(ranks, noise=True) == 1.0
    # d=2: the single pair (0, 2) is identical                                          -> 0 over 1 pair
    assert cm.t5d_sums(ranks, noise=False, difficulty=2) == (0, 1)


def test_sequence_metric_errors():
    preds = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ShapeError, match="at least 4"):
        cm.flip_counts(preds, noise=False, difficulty=3)
    with pytest.raises(ShapeError, match="at least 2"):
        cm.flip_counts(preds[:, :1], noise=True)
    for bad in (0, 1.5, True):
        with pytest.raises(SpecError, match="difficulty"):
            cm.flip_counts(preds, noise=False, difficulty=bad)
    with pytest.raises(SpecError, match="noise"):
        cm.flip_counts(preds, noise="gaussian_noise")
    with pytest.raises(ShapeError, match="integer"):
        cm.flip_counts(preds.float(), noise=False)
    with pytest.raises(ShapeError):
        cm.flip_counts(preds[0], noise=False)
    with pytest.raises(ShapeError, match="no sequences"):
        cm.flip_probability(preds[:0], noise=False)
    assert cm.flip_counts(preds[:0], noise=False) == (0, 0)
    with pytest.raises(SpecError, match="permutation"):
        cm.t5d_sums(torch.zeros(1, 3, 4, dtype=torch.long), noise=False)
    with pytest.raises(ShapeError):
        cm.t5d_sums(torch.zeros(3, 4), noise=False)
    assert cm.is_noise_perturbation("speckle_noise") and not cm.is_noise_perturbation("snow")


# ------------------------------------------------------------------------------------------------------
# ImageNet-C and ImageNet-P scores
# ------------------------------------------------------------------------------------------------------


def test_published_constants():
    assert set(cm.ALEXNET_C_ERRORS) == set(ORDER) and len(cm.ALEXNET_C_ERRORS) == 19
    assert cm.BENCHMARK_CORRUPTIONS == ORDER[:15]
    assert set(cm.ALEXNET_P_FP) == set(cm.ALEXNET_P_UT5D) and len(cm.ALEXNET_P_FP) == 14
    assert set(cm.BENCHMARK_PERTURBATIONS) <= set(cm.ALEXNET_P_FP) and len(cm.BENCHMARK_PERTURBATIONS) == 10
    assert set(cm.BENCHMARK_PERTURBATIONS) - set(cm.CIFAR_P_EVAL_PERTURBATIONS) == {"snow"}
    assert set(cm.CIFAR_P_EVAL_PERTURBATIONS) - set(cm.BENCHMARK_PERTURBATIONS) == {"spatter"}
    assert cm.ALEXNET_P_FP["gaussian_noise"] == 0.2365 and cm.ALEXNET_P_UT5D["translate"] == 2.63
    assert all(0 < v < 1 for v in [*cm.ALEXNET_C_ERRORS.values(), *cm.ALEXNET_P_FP.values()])
    assert cm.ALEXNET.name == "AlexNet (Hendrycks & Dietterich 2019, published)"
    assert cm.ALEXNET.clean_error == cm.ALEXNET_CLEAN_ERROR == 0.435
    assert cm.ALEXNET.covers("imagenet-c") and cm.ALEXNET.covers("imagenet-p")
    assert not cm.ALEXNET.covers("cifar10-c")
    assert json.loads(json.dumps(cm.ALEXNET.to_json()))["fp"]["shear"] == 0.1066


def test_ce_by_hand_with_per_severity_and_averaged_references():
    errors = {"fog": [0.1, 0.2, 0.3, 0.4, 0.5]}  # sum 1.5, mean 0.3
    assert cm.corruption_errors(errors) == {"fog": pytest.approx(0.3)}
    # sum 1.5 over the reference's sum 0.2+0.3+0.4+0.5+0.6 = 2.0                  -> 0.75
    assert cm.ce(errors, {"fog": [0.2, 0.3, 0.4, 0.5, 0.6]}) == {"fog": pytest.approx(0.75)}
    # an averaged reference 0.4 stands for the sum 5 x 0.4 = 2.0                   -> 0.75
    assert cm.ce(errors, {"fog": 0.4}) == {"fog": pytest.approx(0.75)}
    # relative: (1.5 - 5 x 0.1) / (2.0 - 5 x 0.2) = 1.0 / 1.0                      -> 1.0
    assert cm.relative_ce(errors, 0.1, {"fog": 0.4}, 0.2) == {"fog": pytest.approx(1.0)}
    # (5 x 0.3 - 5 x 0.1) / (5 x 0.5 - 5 x 0.2) = 1.0 / 1.5                          -> 0.6667
    rel = cm.relative_ce({"fog": [0.3] * 5}, 0.1, {"fog": [0.5] * 5}, 0.2)
    assert rel["fog"] == pytest.approx(2 / 3)


def test_alexnet_normalised_by_itself_is_one():
    errors = {c: [e] * 5 for c, e in cm.ALEXNET_C_ERRORS.items()}
    for values in (
        cm.ce(errors, cm.ALEXNET),
        cm.ce(errors, cm.ALEXNET_C_ERRORS),
        cm.relative_ce(errors, cm.ALEXNET_CLEAN_ERROR, cm.ALEXNET),
    ):
        assert set(values) == set(cm.ALEXNET_C_ERRORS)
        assert all(v == pytest.approx(1.0, abs=1e-12) for v in values.values())
        assert cm.mce(values) == pytest.approx(1.0, abs=1e-12)
    assert cm.relative_mce(cm.relative_ce(errors, 0.435, cm.ALEXNET)) == pytest.approx(1.0, abs=1e-12)
    frs = cm.fr(cm.ALEXNET_P_FP, cm.ALEXNET)
    t5ds = cm.t5d(cm.ALEXNET_P_UT5D, cm.ALEXNET_P_UT5D)
    assert all(v == 1.0 for v in [*frs.values(), *t5ds.values()]) and len(frs) == len(t5ds) == 14
    assert cm.mfr(frs) == 1.0 and cm.mt5d(t5ds) == 1.0


def test_mce_of_made_up_errors_equals_the_hand_sum():
    # made-up CE per benchmark corruption: errors k_c x AlexNet's error at every severity
    k = [0.80, 0.82, 0.83, 0.75, 0.89, 0.78, 0.80, 0.78, 0.75, 0.66, 0.57, 0.71, 0.85, 0.77, 0.77]
    errors = {c: [kc * cm.ALEXNET_C_ERRORS[c]] * 5 for c, kc in zip(cm.BENCHMARK_CORRUPTIONS, k, strict=True)}
    errors["saturate"] = [0.99] * 5  # held out: not in the mCE
    # hand sum: .80+.82+.83+.75+.89 = 4.09; .78+.80+.78+.75+.66 = 3.77; .57+.71+.85+.77+.77 = 3.67;
    # 4.09 + 3.77 + 3.67 = 11.53; / 15                                            -> 0.768667
    assert cm.mce(cm.ce(errors, cm.ALEXNET)) == pytest.approx(11.53 / 15, abs=1e-12)
    assert 100 * cm.mce(cm.ce(errors, cm.ALEXNET)) == pytest.approx(76.87, abs=0.005)


def test_published_resnet50_figures_are_not_contradicted():
    # ResNet-50 (paper Table 1): clean error 23.9%, mCE 76.7%, relative mCE 105.0%. Made-up errors of the
    # affine form E_c = 1.05 A_c - 0.21775 (A_c AlexNet's error; 0.21775 = 1.05 x 0.435 - 0.239) give
    # relative CE_c = 5 (1.05 A_c - 0.21775 - 0.239) / 5 (A_c - 0.435) = 1.05 (A_c - 0.435) / (A_c - 0.435)
    # = 1.05 for every c, and CE_c = 1.05 - 0.21775 / A_c.
    errors = {c: [1.05 * cm.ALEXNET_C_ERRORS[c] - 0.21775] * 5 for c in cm.BENCHMARK_CORRUPTIONS}
    rel = cm.relative_ce(errors, 0.239, cm.ALEXNET)
    assert all(v == pytest.approx(1.05, abs=1e-12) for v in rel.values())
    assert cm.relative_mce(rel) == pytest.approx(1.05, abs=1e-12)
    inv = sum(1 / cm.ALEXNET_C_ERRORS[c] for c in cm.BENCHMARK_CORRUPTIONS) / 15  # mean 1/A_c = 1.2935
    m = cm.mce(cm.ce(errors, cm.ALEXNET))
    assert m == pytest.approx(1.05 - 0.21775 * inv, abs=1e-12)
    # 1.05 - 0.21775 x 1.2935 = 0.7683: within 0.2 points of the published 76.7% with the same clean
    # error and relative mCE, so the three published figures are consistent with these definitions
    assert abs(100 * m - 76.7) < 0.2


def test_mean_scores_missing_names():
    values = {"fog": 0.8, "snow": None, "frost": 0.6}
    with pytest.raises(SpecError, match="snow") as info:
        cm.mce(values, names=["fog", "snow", "frost", "contrast"])
    assert "contrast" in str(info.value) and "allow_missing" in str(info.value)
    mean, missing = cm.mce(values, names=["fog", "snow", "frost", "contrast"], allow_missing=True)
    assert mean == pytest.approx(0.7) and missing == ["snow", "contrast"]
    with pytest.raises(SpecError, match="gaussian_noise"):
        cm.mce({"fog": 1.0})  # default: all 15 benchmark corruptions
    assert cm.mce({"fog": 0.8, "frost": 0.6}, names=None) == pytest.approx(0.7)
    with pytest.raises(SpecError, match="none of"):
        cm.mfr({"snow": None}, names=["snow"], allow_missing=True)
    mean, missing = cm.mt5d(dict.fromkeys(cm.BENCHMARK_PERTURBATIONS[:9], 0.5), allow_missing=True)
    assert mean == 0.5 and missing == ["scale"]


def test_score_errors():
    with pytest.raises(SpecError, match="5 values"):
        cm.ce({"fog": [0.1] * 4}, cm.ALEXNET)
    with pytest.raises(SpecError, match=r"\[0.0, 1.0\]"):
        cm.corruption_errors({"fog": [0.1, 0.2, 1.2, 0.1, 0.1]})
    with pytest.raises(SpecError, match="has no error for mystery"):
        cm.ce({"mystery": [0.5] * 5, "fog": [0.5] * 5}, cm.ALEXNET)
    assert list(cm.ce({"mystery": [0.5] * 5, "fog": [0.5] * 5}, cm.ALEXNET, allow_missing=True)) == ["fog"]
    with pytest.raises(SpecError, match="reference_clean_error"):
        cm.relative_ce({"fog": [0.5] * 5}, 0.2, {"fog": 0.6})
    with pytest.raises(SpecError, match="undefined"):
        cm.relative_ce({"fog": [0.5] * 5}, 0.2, {"fog": 0.3}, 0.3)
    with pytest.raises(SpecError, match="has no flip probability for wobble"):
        cm.fr({"wobble": 0.1}, cm.ALEXNET_P_FP)
    with pytest.raises(SpecError, match="uT5D"):
        cm.t5d({"snow": -1.0}, cm.ALEXNET)


# ------------------------------------------------------------------------------------------------------
# Reference models from results files
# ------------------------------------------------------------------------------------------------------


def c_results(**overrides) -> dict:
    doc = {
        "suite": "cifar10-c",
        "model": {"spec": "resnet18_cifar", "weights": "w.pt"},
        "clean_error": 0.05,
        "corruptions": {
            "fog": {
                "severities": [1, 2, 3, 4, 5],
                "errors": [0.1, 0.2, 0.3, 0.4, 0.5],
                "mean_error": 0.3,
                "ce": None,
                "relative_ce": None,
                "held_out": False,
            },
            "saturate": {"errors": [0.1, 0.1, 0.2, 0.2, 0.4], "mean_error": 0.2, "ce": None},
        },
        "mce": None,
        "relative_mce": None,
        "normalizer": None,
    }
    doc.update(overrides)
    return doc


def p_results(**overrides) -> dict:
    doc = {
        "suite": "cifar10-p",
        "model": "resnet18_cifar",
        "difficulty": 1,
        "perturbations": {
            "gaussian_noise": {"fp": 0.08, "ut5d": 1.5, "fr": None, "t5d": None, "difficulty": 1},
            "translate": {"fp": 0.02, "ut5d": 0.4, "fr": None, "t5d": None, "difficulty": 1},
        },
        "mfr": None,
        "mt5d": None,
    }
    doc.update(overrides)
    return doc


def write(tmp_path, doc, name="results.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_load_reference_c_round_trip(tmp_path):
    ref = cm.load_reference(write(tmp_path, c_results()), suite="cifar10-c")
    assert ref.name == "resnet18_cifar" and ref.suite == "cifar10-c" and ref.clean_error == 0.05
    assert ref.corruption_errors == {"fog": (0.1, 0.2, 0.3, 0.4, 0.5), "saturate": (0.1, 0.1, 0.2, 0.2, 0.4)}
    assert ref.mean_errors()["saturate"] == pytest.approx(0.2) and str(tmp_path) in ref.source
    assert ref.covers("cifar10-c") and not ref.covers("cifar10-p") and ref.fp == {}
    same = {"fog": [0.1, 0.2, 0.3, 0.4, 0.5]}
    assert cm.ce(same, ref) == {"fog": pytest.approx(1.0)}
    # relative CE takes the reference's clean error from the file: (1.5 - 0.25) / (1.5 - 0.25)
    assert cm.relative_ce(same, 0.05, ref) == {"fog": pytest.approx(1.0)}
    # (5 x 0.4 - 5 x 0.1) / (1.5 - 5 x 0.05) = 1.5 / 1.25                           -> 1.2
    assert cm.relative_ce({"fog": [0.4] * 5}, 0.1, ref)["fog"] == pytest.approx(1.2)
    doc = c_results()
    doc["corruptions"]["fog"] = {"mean_error": 0.3}  # only an average: kept as one
    assert cm.load_reference(write(tmp_path, doc)).corruption_errors["fog"] == 0.3
    assert json.loads(json.dumps(ref.to_json()))["corruption_errors"]["fog"] == [0.1, 0.2, 0.3, 0.4, 0.5]


def test_load_reference_p_round_trip(tmp_path):
    ref = cm.load_reference(write(tmp_path, p_results()))
    assert ref.suite == "cifar10-p" and ref.difficulty == 1 and ref.corruption_errors == {}
    assert ref.fp == {"gaussian_noise": 0.08, "translate": 0.02} and ref.ut5d["translate"] == 0.4
    assert cm.fr({"translate": 0.01}, ref) == {"translate": pytest.approx(0.5)}
    assert cm.t5d({"gaussian_noise": 3.0}, ref) == {"gaussian_noise": pytest.approx(2.0)}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        (c_results(suite=None), "lacks 'suite'"),
        (c_results(suite="cifar10"), "C or P benchmark"),
        (c_results(corruptions=None), "lacks 'corruptions'"),
        (c_results(corruptions={}), "'corruptions' must map"),
        (c_results(corruptions={"fog": {"ce": 1.0}}), "corruption 'fog' lacks 'errors'"),
        (c_results(corruptions={"fog": {"severities": [3], "errors": [0.3]}}), r"severities \[3\]"),
        (c_results(corruptions={"fog": {"errors": [0.3, 0.4]}}), r"severities \[1, 2\]"),
        (c_results(corruptions={"fog": {"errors": [0.1, 0.2, 0.3, 0.4, 2.0]}}), r"fog' errors\[4\]"),
        (c_results(clean_error="low"), "clean_error must be a number"),
        (p_results(perturbations=None), "lacks 'perturbations'"),
        (p_results(perturbations={"snow": {"fp": 0.1}}), "perturbation 'snow' lacks 'ut5d'"),
        (
            p_results(perturbations={"snow": {"fp": 0.1, "ut5d": 1, "difficulty": 2}}),
            r"mixes difficulties \[1, 2\]",
        ),
    ],
)
def test_load_reference_errors(tmp_path, doc, message):
    path = write(tmp_path, doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(SpecError, match=message) as info:
        cm.load_reference(path)
    assert str(path) in str(info.value)


def test_load_reference_wrong_suite_and_missing_file(tmp_path):
    path = write(tmp_path, p_results())
    with pytest.raises(SpecError, match="holds cifar10-p results; expected cifar10-c"):
        cm.load_reference(path, suite="cifar10-c")
    with pytest.raises(SpecError, match="cannot read"):
        cm.load_reference(tmp_path / "absent.json")
