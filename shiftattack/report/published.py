"""Published figures our reports put beside our measurements, each with its source (entered once, here).

Every value is as printed in the cited source; ``tests/test_published.py`` checks each
table against the project's reference copy when it is available.
"""

from __future__ import annotations

__all__ = ["SOURCES", "ZHANG_IMAGENET", "CMOD_IMAGENET", "CMOD_CIFAR10", "HENDRYCKS", "ENGSTROM"]

SOURCES = {
    "zhang2019": "R. Zhang, Making Convolutional Networks Shift-Invariant Again, ICML 2019 "
    "(antialiased-cnns README_IMAGENET.md)",
    "leterme2024": "H. Leterme, K. Polisano, V. Perrier, K. Alahari, From CNNs to Shift-Invariant "
    "Twin Models Based on Complex Wavelets, EUSIPCO 2024 (arXiv 2212.00394)",
    "hendrycks2019": "D. Hendrycks, T. Dietterich, Benchmarking Neural Network Robustness to Common "
    "Corruptions and Perturbations, ICLR 2019",
    "engstrom2019": "L. Engstrom et al., Exploring the Landscape of Spatial Robustness, ICML 2019 "
    "(spatial-pytorch ResNet-18 re-run on ImageNet)",
}

#: ImageNet top-1 accuracy / consistency (%), trained from scratch; "filter-4 fine-tuned" is the
#: package's fine-tuned filter-4 models. {model: {variant: (accuracy, consistency)}}
ZHANG_IMAGENET: dict[str, dict[str, tuple[float, float]]] = {
    "AlexNet": {"Baseline": (56.55, 78.18), "Tri-3": (56.90, 82.15), "Tri-4": (56.72, 82.54),
                "Bin-5": (56.58, 82.51), "filter-4 fine-tuned": (56.94, 83.31)},
    "VGG16": {"Baseline": (71.59, 88.52), "Tri-3": (72.20, 89.60), "Tri-4": (72.43, 89.92),
              "Bin-5": (72.33, 90.19), "filter-4 fine-tuned": (72.96, 90.91)},
    "VGG16-bn": {"Baseline": (73.36, 89.24), "Tri-3": (73.91, 91.10), "Tri-4": (74.12, 91.22),
                 "Bin-5": (74.05, 91.35), "filter-4 fine-tuned": (75.13, 91.58)},
    "ResNet18": {"Baseline": (69.74, 85.11), "Tri-3": (71.69, 87.51), "Tri-4": (71.48, 88.07),
                 "Bin-5": (71.38, 88.25), "filter-4 fine-tuned": (71.67, 88.36)},
    "ResNet34": {"Baseline": (73.30, 87.56), "Tri-3": (74.33, 89.32), "Tri-4": (74.38, 89.53),
                 "Bin-5": (74.20, 89.49), "filter-4 fine-tuned": (74.60, 89.77)},
    "ResNet50": {"Baseline": (76.16, 89.20), "Tri-3": (76.83, 90.91), "Tri-4": (77.23, 91.29),
                 "Bin-5": (77.04, 91.31), "filter-4 fine-tuned": (77.41, 91.32)},
    "ResNet101": {"Baseline": (77.37, 89.81), "Tri-3": (78.13, 91.62), "Tri-4": (78.22, 91.85),
                  "Bin-5": (77.92, 91.74), "filter-4 fine-tuned": (78.38, 91.97)},
    "DenseNet121": {"Baseline": (74.43, 88.81), "Tri-3": (75.14, 89.78), "Tri-4": (75.29, 90.29),
                    "Bin-5": (75.03, 90.39), "filter-4 fine-tuned": (75.79, 90.35)},
    "MobileNetV2": {"Baseline": (71.88, 86.50), "Tri-3": (72.59, 87.46), "Tri-4": (72.72, 87.72),
                    "Bin-5": (72.50, 87.79), "filter-4 fine-tuned": (72.72, 87.73)},
}  # fmt: skip

#: ImageNet one-crop error / ten-crop error / mean flip rate (normalised to 100), CMod paper.
#: {variant: {model: (one_crop, ten_crop, mfr)}}
CMOD_IMAGENET: dict[str, dict[str, tuple[float, float, float]]] = {
    "Standard CNN": {"AlexNet": (45.3, 41.3, 100.0), "ResNet-34": (27.6, 24.8, 78.1)},
    "Twin + CMod": {"AlexNet": (44.3, 40.2, 88.0), "ResNet-34": (27.2, 24.4, 73.1)},
    "BlurPool CNN": {"AlexNet": (44.4, 40.7, 63.8), "ResNet-34": (26.7, 24.0, 61.2)},
    "BlurPool twin + CMod": {"AlexNet": (43.3, 39.6, 69.4), "ResNet-34": (26.5, 23.7, 62.5)},
}

#: CIFAR-10 ResNet-18: one-crop error / ten-crop error / mean flip rate, CMod paper. {variant: values}
CMOD_CIFAR10: dict[str, tuple[float, float, float]] = {
    "Standard CNN": (14.9, 10.8, 100.0),
    "Twin + CMod": (13.8, 9.6, 88.8),
    "BlurPool CNN": (14.2, 10.4, 87.7),
    "BlurPool twin + CMod": (12.3, 8.9, 85.7),
}

#: Corruption robustness (%): ResNet-50 and the anti-aliased ResNet-50 (Bin-5).
HENDRYCKS = {
    "ResNet-50": {"imagenet_c_mce": 76.7, "imagenet_p_mfr": 58.0, "imagenet_p_mt5d": 78.4},
    "ResNet-50 Bin-5": {"imagenet_p_mfr": 51.2, "imagenet_p_mt5d": 71.9},
}

#: Spatial attacks on ImageNet ResNet-18 (accuracy %). {training: (natural, random, worst-of-10, grid)}
ENGSTROM: dict[str, tuple[float, float, float, float]] = {
    "Standard": (71.3, 60.6, 39.9, 20.9),
    "Data aug. (30 deg / 24 px)": (68.9, 68.0, 54.6, 38.1),
    "Worst-of-10 training": (69.1, 68.0, 59.4, 48.1),
}
