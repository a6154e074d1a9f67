"""The reproduction's design, fixed before it runs: arms, units, sizes, and every claim's rule.

A *unit* is one trained model (architecture, augmentation, seed) and every measurement of it;
an *arm* is a set of units that are compared with each other (the same training recipe).
The claims' rules below (:data:`TESTS`) are written before any unit of the arm they read
runs; the driver records their sha256 and the commit in ``experiment.json``, so a rule
changed after the results are seen shows in the history.

A test's *effect* is a contrast ``sum_k w_k * m_k`` of models' seed-averaged metric ``m``
(percentage points): a difference of two models (weights +1, -1), or the least-squares
slope over the BlurPool filter size (baseline = size 1). Its 95 % interval comes from
:func:`shiftattack.metrics.stats.contrast` (the same test images for every model; the
image and the seed variance both counted). The verdict (:func:`shiftattack.metrics.stats.verdict`):

* ``superiority``: *reproduced* if the interval lies beyond ``margin`` in the paper's
  direction, *contradicted* if it lies beyond ``margin`` in the other direction (margin 0:
  the interval excludes zero), else *inconclusive*;
* ``noninferiority``: *reproduced* if the interval lies above ``-margin`` (in the paper's
  direction), *contradicted* if it lies entirely below ``-margin``;
* ``equivalence``: *reproduced* if the interval lies inside ``(-margin, margin)``,
  *contradicted* if it lies entirely outside it;
* ``threshold``: the metric of one model against a fixed value, same rule as superiority.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the BlurPool filter sizes; the baseline counts as size 1 (no blur) in trends
FILTER_SIZE = {"baseline": 1, "rect2": 2, "tri3": 3, "bin5": 5, "bin7": 7}

#: human-readable names
DISPLAY = {
    "baseline": "Baseline",
    "rect2": "BlurPool Rect-2",
    "tri3": "BlurPool Tri-3",
    "bin5": "BlurPool Bin-5",
    "bin7": "BlurPool Bin-7",
    "cmod": "CMod",
    "tri3_cmod": "BlurPool Tri-3 + CMod",
    "aps": "APS",
    "gabor_maxpool": "Gabor stem + max-pool (control)",
    "s1k1": "stem stride 1, no pooling",
    "s2k1": "stem stride 2, kernel 1 (bare subsampling)",
    "s2k3": "stem stride 2, max-pool kernel 3",
    "stride/s1k1": "stem stride 1, no pooling",
    "stride/s2k1": "stem stride 2, kernel 1",
    "stride_up/s1k1": "upsampled data: stem stride 1, no pooling",
    "stride_up/s2k1": "upsampled data: stem stride 2, kernel 1",
    "blurstem3": "Tri-3 blur in the stem only (control)",
}


@dataclass(frozen=True)
class Arm:
    """Models trained with one recipe and compared with each other."""

    name: str
    models: dict[str, str]  # unit name -> model spec
    seeds: tuple[int, ...]
    augment_pad: int  # random-crop padding in px; 0 = flips only
    description: str
    dataset: str = "cifar10"  # or "cifar10_up2": every image upsampled 2x (bilinear), 64 px
    measure: str = "full"  # "full", or "shift": clean accuracy, consistency and flip rate only
    epochs: int | None = None  # None: the tier's


@dataclass(frozen=True)
class Sizes:
    """How much of everything one unit measures (image counts are class-balanced test subsets)."""

    epochs: int
    train_limit: int | None
    test_limit: int | None  # clean accuracy, consistency, flip rate (None: all 10,000)
    attack_images: int  # attacks and the one-pixel protocols
    radius: int  # attack grid, consistency and flip-rate shifts, canvas padding (px)
    repeats: int  # consistency pairs per image and mode
    c_images: int
    p_images: int
    one_pixel_steps: int = 8
    black_canvas_small: int = 24
    batch_size: int = 256


WIDTH = 32


def _cifar(family: str, width: int = WIDTH) -> str:
    return f"{family}(width={width})"


MAIN_MODELS = {
    "baseline": _cifar("cifar_convnet"),
    "rect2": _cifar("cifar_convnet_blur2"),
    "tri3": _cifar("cifar_convnet_blur3"),
    "bin5": _cifar("cifar_convnet_blur5"),
    "bin7": _cifar("cifar_convnet_blur7"),
    "cmod": _cifar("cifar_convnet_cmod"),
    "tri3_cmod": _cifar("cifar_convnet_blur3_cmod"),
    "aps": _cifar("cifar_convnet_aps"),
}

STRIDE_MODELS = {
    "s1k1": "cifar_convnet(width=8, stem_kernel=1, stem_stride=1)",
    "s2k1": "cifar_convnet(width=8, stem_kernel=1, stem_stride=2)",
    "s2k3": "cifar_convnet(width=8, stem_kernel=3, stem_stride=2)",
}

ARMS = {
    "cpu": [
        Arm("main", MAIN_MODELS, (0, 1, 2), 4,
            "flips and 4-px random crops, 15 epochs on all 50,000 training images"),
        Arm("noaug", {k: MAIN_MODELS[k] for k in ("baseline", "tri3", "bin5", "bin7")}, (0, 1), 0,
            "flips only (no translation augmentation), otherwise as main"),
        Arm("controls", {"gabor_maxpool": _cifar("cifar_convnet_gabor_maxpool"),
                         "blurstem3": _cifar("cifar_convnet_blurstem3")}, (0, 1, 2), 4,
            "as main; compared with main's CMod, Tri-3 and baseline of the same seeds"),
        # claim 4 (Mouton et al.): the stem's stride itself varies, with a pooling kernel of 1 (bare
        # subsampling) or 3; local homogeneity is raised by upsampling (no information lost)
        Arm("stride", STRIDE_MODELS, (0, 1), 0,
            "cifar_convnet(width=8), the stem's pooling varied; flips only, 10 epochs, all 50,000 images",
            measure="shift", epochs=10),
        Arm("stride_up", {k: STRIDE_MODELS[k] for k in ("s1k1", "s2k1")}, (0, 1), 0,
            "as the stride arm on CIFAR-10 upsampled 2x (64 px, bilinear): higher local homogeneity",
            dataset="cifar10_up2", measure="shift", epochs=10),
    ],
    "gpu": [
        Arm("main", {"baseline": "resnet18", "tri3": "resnet18_blur3", "cmod": "resnet18_cmod",
                     "tri3_cmod": "resnet18_blur3_cmod"}, (0, 1, 2), 4,
            "the CMod paper's CIFAR-10 ResNet-18 table: standard, BlurPool, twin + CMod, BlurPool twin + CMod"),
    ],
    # the GPU tier's code path at tiny sizes, so CI (CPU only) runs it
    "gpu_smoke": [
        Arm("main", {"baseline": "resnet18", "tri3_cmod": "resnet18_blur3_cmod"}, (0,), 4,
            "smoke test of the GPU tier (two of its models; every one is built in the tests)"),
    ],
    "quick": [
        Arm("main", {"baseline": "cifar_convnet(width=8)", "tri3": "cifar_convnet_blur3(width=8)",
                     "cmod": "cifar_convnet_cmod(width=8)"}, (0, 1), 4, "smoke test"),
        Arm("noaug", {"baseline": "cifar_convnet(width=8)"}, (0,), 0, "smoke test"),
        Arm("stride", {k: STRIDE_MODELS[k] for k in ("s1k1", "s2k1")}, (0,), 0, "smoke test", measure="shift"),
        Arm("stride_up", {k: STRIDE_MODELS[k] for k in ("s1k1", "s2k1")}, (0,), 0, "smoke test",
            dataset="cifar10_up2", measure="shift"),
    ],
}

SIZES = {
    "cpu": Sizes(epochs=15, train_limit=None, test_limit=None, attack_images=2000, radius=4, repeats=3,
                 c_images=500, p_images=200),
    "gpu": Sizes(epochs=30, train_limit=None, test_limit=None, attack_images=10000, radius=4, repeats=5,
                 c_images=10000, p_images=10000),
    "gpu_smoke": Sizes(epochs=1, train_limit=64, test_limit=20, attack_images=10, radius=1, repeats=1,
                       c_images=4, p_images=2, one_pixel_steps=2, batch_size=32),
    "quick": Sizes(epochs=1, train_limit=512, test_limit=96, attack_images=40, radius=2, repeats=2,
                   c_images=16, p_images=8, one_pixel_steps=4, black_canvas_small=24, batch_size=64),
}

#: attack modes per model (circular only where the claim is about circular shifts: APS)
ATTACK_MODES = {"default": ("zero", "crop"), "aps": ("zero", "crop", "circular")}


def unit_id(arm: str, name: str, seed: int) -> str:
    return f"{arm}-{name}-s{seed}"


def units(tier: str) -> list[tuple[Arm, str, str, int]]:
    """Every (arm, name, spec, seed) of a tier in run order: arm by arm, seed by seed (main first,
    so its three seeds, which the acceptance needs, finish before the other arms start)."""
    return [(arm, name, spec, seed) for arm in ARMS[tier] for seed in arm.seeds
            for name, spec in arm.models.items()]


# ----------------------------------------------------------------------------- the claims' rules


@dataclass(frozen=True)
class Test:
    """One pre-registered test of a claim.

    Attributes:
        claim: the claim's number (RESULTS.md's list).
        name: what is tested, in a few words.
        metric: a per-image metric of :mod:`summarise` (``clean``, ``survival_crop``, ...).
        contrast: unit name -> weight (a difference or a slope; see the module docstring).
        kind, direction, margin: the rule (direction +1: the paper says the contrast is positive).
        arm: whose units the contrast reads ("main" by default; a control reads its arm and main).
        relative_margin: the margin is this fraction of the baseline's metric (else ``margin``
            is in the metric's own units).
        threshold: for ``kind == "threshold"``: the fixed value the metric is compared with.
    """

    claim: int
    name: str
    metric: str
    contrast: dict[str, float]
    kind: str
    direction: int = 1
    margin: float = 0.0
    arm: str = "main"
    relative_margin: float | None = None
    threshold: float | None = None
    published: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _diff(a: str, b: str) -> dict[str, float]:
    return {a: 1.0, b: -1.0}


def slope_weights(names: list[str]) -> dict[str, float]:
    """Least-squares slope over FILTER_SIZE: weights w_k = (f_k - mean f) / sum (f - mean f)^2."""
    f = [FILTER_SIZE[n] for n in names]
    mean = sum(f) / len(f)
    ss = sum((v - mean) ** 2 for v in f)
    return {n: (v - mean) / ss for n, v in zip(names, f, strict=True)}


BLUR = ["rect2", "tri3", "bin5", "bin7"]
TREND_MAIN = ["baseline", *BLUR]
TREND_NOAUG = ["baseline", "tri3", "bin5", "bin7"]

TESTS: list[Test] = [
    # claim 1: BlurPool raises consistency without costing accuracy; stronger filters resist shifts better
    *[Test(1, f"{DISPLAY[f]} more consistent than the baseline (crop shifts)", "consistency_crop",
           _diff(f, "baseline"), "superiority", published="Zhang: consistency +2.4 to +3.1 pts (ResNet-18, ImageNet)")
      for f in BLUR],
    *[Test(1, f"{DISPLAY[f]} no less accurate than the baseline (margin 0.5 pt)", "clean",
           _diff(f, "baseline"), "noninferiority", margin=0.5,
           published="Zhang: top-1 +1.6 to +2.0 pts (ResNet-18, ImageNet)")
      for f in BLUR],
    Test(1, "survival of correct images under the crop-shift adversary rises with filter size",
         "survival_crop", slope_weights(TREND_MAIN), "superiority", direction=1,
         published="Zhang: stronger filters, smaller accuracy drops under shifts"),
    Test(1, "P(top-1 change) per 1-px sliding crop falls with filter size", "p_change_crop",
         slope_weights(TREND_MAIN), "superiority", direction=-1),
    Test(1, "MAC per 1-px sliding crop falls with filter size", "mac_crop",
         slope_weights(TREND_MAIN), "superiority", direction=-1),
    Test(1, "without crop augmentation: survival rises with filter size", "survival_crop",
         slope_weights(TREND_NOAUG), "superiority", direction=1, arm="noaug"),
    Test(1, "without crop augmentation: P(top-1 change) falls with filter size", "p_change_crop",
         slope_weights(TREND_NOAUG), "superiority", direction=-1, arm="noaug"),
    Test(1, "without crop augmentation: MAC falls with filter size", "mac_crop",
         slope_weights(TREND_NOAUG), "superiority", direction=-1, arm="noaug"),
    # claim 2: smoother learnt filters
    *[Test(2, f"{DISPLAY[f]}: lower first-layer normalised TV than the baseline", "tv_stem",
           _diff(f, "baseline"), "superiority", direction=-1, published="Zhang: qualitative (filter plots)")
      for f in BLUR],
    *[Test(2, f"{DISPLAY[f]}: lower normalised TV than the baseline, mean over all conv layers", "tv_all",
           _diff(f, "baseline"), "superiority", direction=-1)
      for f in BLUR],
    # claim 3: CMod beats BlurPool on accuracy at lower cost with comparable stability
    Test(3, "CMod more accurate than BlurPool Tri-3", "clean", _diff("cmod", "tri3"), "superiority",
         published="CIFAR-10 ResNet-18: twin + CMod 13.8 % vs BlurPool 14.2 % error"),
    Test(3, "BlurPool Tri-3 + CMod more accurate than BlurPool Tri-3 (the paper's main pair)", "clean",
         _diff("tri3_cmod", "tri3"), "superiority",
         published="CIFAR-10 ResNet-18: BlurPool twin + CMod 12.3 % vs BlurPool 14.2 % error"),
    Test(3, "CMod's mean flip rate within 10 % (of the baseline's) of Tri-3's", "flip",
         _diff("cmod", "tri3"), "equivalence", relative_margin=0.10,
         published="CIFAR-10 ResNet-18 mean flip rate: twin + CMod 88.8 vs BlurPool 87.7 (standard = 100)"),
    Test(3, "Tri-3 + CMod's mean flip rate within 10 % (of the baseline's) of Tri-3's", "flip",
         _diff("tri3_cmod", "tri3"), "equivalence", relative_margin=0.10,
         published="BlurPool twin + CMod 85.7 vs BlurPool 87.7"),
    Test(3, "control: CMod flips less than the same Gabor stem with a plain max-pool (the modulus matters)",
         "flip", _diff("cmod", "gabor_maxpool"), "superiority", direction=-1, arm="controls"),
    Test(3, "control: CMod no less accurate than the Gabor + max-pool stem (margin 0.5 pt)", "clean",
         _diff("cmod", "gabor_maxpool"), "noninferiority", margin=0.5, arm="controls"),
    Test(3, "control: CMod's mean flip rate within 10 % of a Tri-3 blur in the stem only", "flip",
         _diff("cmod", "blurstem3"), "equivalence", relative_margin=0.10, arm="controls"),
    # claim 4: stride helps invariance only with local homogeneity; larger kernels: invariance for accuracy
    Test(4, "stride 2 gains more consistency over stride 1 on the more homogeneous (upsampled) data "
            "(interaction; correctly classified images, zero shifts)", "consistency_zero_correct",
         {"stride_up/s2k1": 1.0, "stride_up/s1k1": -1.0, "stride/s2k1": -1.0, "stride/s1k1": 1.0},
         "superiority", arm="stride", published="Mouton et al.: qualitative"),
    Test(4, "on the upsampled data stride 2 is more consistent than stride 1 (correctly classified images)",
         "consistency_zero_correct", _diff("s2k1", "s1k1"), "superiority", arm="stride_up"),
    Test(4, "a larger pooling kernel (3 vs 1, stride 2) gives more consistency (correctly classified images)",
         "consistency_zero_correct", _diff("s2k3", "s2k1"), "superiority", arm="stride"),
    Test(4, "a larger pooling kernel (3 vs 1, stride 2) generalises worse", "clean", _diff("s2k3", "s2k1"),
         "superiority", direction=-1, arm="stride"),
    # claim 5: small shifts change many predictions; neither architecture nor augmentation alone fixes it
    Test(5, "baseline without crop augmentation: P(top-1 change) per 1-px shift on a black canvas above 5 %",
         "p_change_black", {"baseline": 1.0}, "threshold", threshold=5.0, arm="noaug",
         published="Azulay & Weiss: tens of percent for ImageNet CNNs under 1-px shifts (their Fig. 1-2)"),
    Test(5, "augmentation alone: the augmented baseline's P(top-1 change) per 1-px sliding crop above 2 %",
         "p_change_crop", {"baseline": 1.0}, "threshold", threshold=2.0),
    *[Test(5, f"architecture alone: {DISPLAY[f]} without crop augmentation, P(change) on a black canvas "
              f"above 2 %", "p_change_black", {f: 1.0}, "threshold", threshold=2.0, arm="noaug")
      for f in ("bin5", "bin7")],
]
