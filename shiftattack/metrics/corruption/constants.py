"""Published constants (benchmark names, AlexNet normalisers) and the small input checks.

Part of :mod:`shiftattack.metrics.corruption` (see its docstring for the definitions)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from torch import Tensor

from shiftattack.errors import SpecError

__all__ = [
    "ALEXNET_CLEAN_ERROR",
    "ALEXNET_C_ERRORS",
    "ALEXNET_P_FP",
    "ALEXNET_P_UT5D",
    "BENCHMARK_CORRUPTIONS",
    "BENCHMARK_PERTURBATIONS",
    "CIFAR_P_EVAL_PERTURBATIONS",
    "is_noise_perturbation",
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
