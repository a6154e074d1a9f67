"""Inference precision: run a model under ``torch.autocast`` in bf16 or fp16, or plainly in fp32.

A run at reduced precision makes a claim about *the model at that precision*: the search,
the separate re-verification pass of every failure and of every survivor's worst shift, and
the reported margins all come from the model under the same autocast. Logits are turned to
float32 before margins are taken, so the margin arithmetic adds no rounding of its own.

>>> describe("bf16", torch.device("cpu"))["autocast_dtype"]
'bfloat16'
>>> check_precision("fp8", torch.device("cpu"))
Traceback (most recent call last):
...
shiftattack.errors.SpecError: unknown precision 'fp8'; expected one of fp32, bf16, fp16
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from shiftattack.errors import SpecError

__all__ = ["PRECISIONS", "autocast_dtype", "check_precision", "describe", "autocast"]

#: Inference precisions: fp32 (no autocast), bf16 and fp16 (``torch.autocast`` with that dtype).
PRECISIONS = ("fp32", "bf16", "fp16")

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (None for fp32, which runs without autocast)."""
    if precision not in _DTYPES:
        raise SpecError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return _DTYPES[precision]


def check_precision(precision: str, device: torch.device) -> None:
    """Raise :class:`SpecError` when ``precision`` is unknown or cannot run on ``device``."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return
    if not torch.amp.is_autocast_available(device.type):
        raise SpecError(f"--precision {precision} needs torch.autocast, which is not available on "
                        f"{device.type}; use --precision fp32")
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise SpecError(f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                        "use --precision fp16 or fp32")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """``torch.autocast(device.type, dtype)`` for bf16 / fp16; nothing for fp32."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


def describe(precision: str, device: torch.device) -> dict:
    """What a results document records about the precision of its model evaluations."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return {"name": "fp32", "autocast_dtype": None, "device": device.type,
                "claim": "about the model in float32"}
    name = str(dtype).removeprefix("torch.")
    return {"name": precision, "autocast_dtype": name, "device": device.type,
            "claim": (f"about the model run under torch.autocast({device.type!r}, {name}); every failure "
                      "and every survivor's worst shift was re-evaluated at this precision, logits "
                      "taken as float32")}
