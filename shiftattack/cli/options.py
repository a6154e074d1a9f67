"""Command-line options and argument types shared by several subcommands (any cli module may use them)."""

from __future__ import annotations

import argparse

__all__ = [
    "add_model_options",
    "add_precision",
    "add_strict_data",
    "batch_size",
    "add_trust_pickle",
    "filter_size",
    "floats",
    "model_options",
    "positive_int",
]


def add_trust_pickle(group) -> None:
    """``--trust-pickle``: the one way to read a weights file that ``torch.load(weights_only=True)``
    refuses."""
    group.add_argument(
        "--trust-pickle",
        action="store_true",
        help="read a weights file that only full unpickling can read (a pickled whole model); "
        "unpickling runs code from the file, so use it only for files you trust",
    )


def add_strict_data(group, of: str = "") -> None:
    """``--strict-data`` (also spelled ``--strict``): stop at a file of ``--data`` that is not an
    image or cannot be read, instead of skipping it with one warning (recorded in the results)."""
    group.add_argument(
        "--strict-data", "--strict", dest="strict", action="store_true",
        help=f"stop at a file{of} that is not an image or cannot be read (default: skip such files "
        "with one warning naming them, recorded in the results)",
    )


#: the inference precisions (the same names as :data:`shiftattack.runtime.precision.PRECISIONS`;
#: repeated here so that ``--help`` does not import torch)
PRECISION_CHOICES = ("fp32", "bf16", "fp16")


def add_precision(group, extra: str = "") -> None:
    """``--precision {fp32,bf16,fp16}``: run the model under ``torch.autocast`` with that dtype."""
    group.add_argument(
        "--precision", default="fp32", choices=PRECISION_CHOICES,
        help="fp32 (default), or bf16 / fp16: run the model under torch.autocast with that dtype; every "
        "failure and every survivor's worst shift is re-evaluated at that precision, and the results "
        f"(which record it) are about the model at that precision{extra}",
    )


def floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def batch_size(text: str) -> int | str:
    """``--batch-size``: a positive whole number, or ``auto`` (a short probe picks the fastest)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number or auto, got {text!r}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


MODEL_HELP = ("registry name, torchvision:NAME, timm:NAME, hf:FOLDER_OR_REPO, package.module:callable or "
              "file.py:callable")


def filter_size(text: str) -> int:
    """``--antialias`` values: a BlurPool filter size 1 to 7."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 7:
        raise argparse.ArgumentTypeError(f"expected a blur filter size 1 to 7 (Zhang's Rect-2 = 2, "
                                         "Tri-3 = 3, "
                                         f"Bin-5 = 5), got {text!r}")
    return value


def add_model_options(group, *, normalization: bool = True) -> None:
    """``--model``, ``--weights``, ``--pretrained``, ``--antialias``, ``--trust-pickle``, and
    (``normalization``) ``--mean``/``--std``."""
    group.add_argument("--model", required=True, help=MODEL_HELP)
    group.add_argument("--weights", help="state_dict file (read with torch.load(weights_only=True))")
    group.add_argument("--pretrained", action="store_true",
                       help="the library's published weights (torchvision:, timm:, hf:, zoo torchvision "
                       "baselines) from its cache (TORCH_HOME, HF_HOME), downloaded when online")
    group.add_argument("--antialias", type=filter_size, metavar="FILTER",
                       help="anti-alias the model with BlurPool of this filter size (1-7) after loading "
                       "its weights (Zhang 2019; timm models as timm's aa_layer)")
    if normalization:  # every scoring command (train starts from random weights by design)
        group.add_argument("--random-weights", action="store_true",
                           help="score a registry or library model with its random initial weights (refused "
                           "otherwise without --weights or --pretrained); recorded in the results")
    add_trust_pickle(group)
    if normalization:
        group.add_argument("--mean", type=floats,
                           help="per-channel mean the model expects, e.g. 0.485,0.456,0.406 (timm:/hf: "
                           "models normalise inside; this replaces theirs)")
        group.add_argument("--std", type=floats, help="per-channel std the model expects")


def model_options(args: argparse.Namespace) -> dict:
    """The model-loading fields of a job config from :func:`add_model_options`' arguments."""
    keys = ("model", "weights", "pretrained", "antialias", "random_weights", "trust_pickle", "mean", "std")
    return {k: getattr(args, k) for k in keys if hasattr(args, k)}
