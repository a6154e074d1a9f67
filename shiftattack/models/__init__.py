"""Models: a registry of named architectures, spec loading and safe weights loading."""

from __future__ import annotations

from . import small  # noqa: F401  (registers the small CNNs)
from ._registry import create_model, is_model, list_models, register_model
from .loading import Normalize, file_sha256, load_model, load_weights
from .small import SmallCNN
from .train import evaluate_accuracy, train_classifier

__all__ = [
    "Normalize",
    "SmallCNN",
    "create_model",
    "file_sha256",
    "is_model",
    "list_models",
    "load_model",
    "load_weights",
    "register_model",
    "evaluate_accuracy",
    "train_classifier",
]
