"""Models: a registry of named architectures, anti-aliasing layers, spec loading and training."""

from __future__ import annotations

from shiftattack.models import aps, cifar, cmod_models, controls, small, zoo  # noqa: F401  (register their models)
from shiftattack.models._registry import create_model, is_model, list_models, parse_model_name, register_model
from shiftattack.models.aps import ApsPool2d, CircularMaxPool2d, aps_convert, aps_pool2d, aps_resnet
from shiftattack.models.blurpool import (
    BlurPool2d,
    MaxBlurPool2d,
    binomial_filter,
    blur_pool2d,
    blur_strided_conv,
)
from shiftattack.models.cifar import CifarConvNet
from shiftattack.models.cmod_models import TwinFit, cmod_alexnet, cmod_resnet, twin
from shiftattack.models.loading import (
    Normalize,
    file_sha256,
    load_model,
    load_weights,
    weights_file,
    weights_sha256,
)
from shiftattack.models.small import SmallCNN
from shiftattack.models.train import evaluate_accuracy, train_classifier

__all__ = [
    "parse_model_name",
    "ApsPool2d",
    "CircularMaxPool2d",
    "aps_convert",
    "aps_pool2d",
    "aps_resnet",
    "BlurPool2d",
    "CifarConvNet",
    "MaxBlurPool2d",
    "Normalize",
    "SmallCNN",
    "TwinFit",
    "binomial_filter",
    "blur_pool2d",
    "blur_strided_conv",
    "cmod_alexnet",
    "cmod_resnet",
    "create_model",
    "evaluate_accuracy",
    "file_sha256",
    "is_model",
    "list_models",
    "load_model",
    "weights_file",
    "weights_sha256",
    "load_weights",
    "register_model",
    "train_classifier",
    "twin",
]
