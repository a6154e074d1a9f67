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

from shiftattack.metrics.corruption.constants import (
    ALEXNET_C_ERRORS,
    ALEXNET_CLEAN_ERROR,
    ALEXNET_P_FP,
    ALEXNET_P_UT5D,
    BENCHMARK_CORRUPTIONS,
    BENCHMARK_PERTURBATIONS,
    CIFAR_P_EVAL_PERTURBATIONS,
    is_noise_perturbation,
)
from shiftattack.metrics.corruption.flips import (
    flip_counts,
    flip_probability,
    t5d_sums,
    top5_distance,
    top5_distance_from_logits,
    unnormalized_t5d,
)
from shiftattack.metrics.corruption.reference import (
    ALEXNET,
    Reference,
    load_reference,
)
from shiftattack.metrics.corruption.scores import (
    ce,
    corruption_errors,
    fr,
    mce,
    mfr,
    mt5d,
    relative_ce,
    relative_mce,
    t5d,
)

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
