"""Model evaluation: device choice, batched logits with checks, logit margins."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from shiftattack.errors import BatchSizeWarning, ModelError, NonFiniteLogits, SpecError
from shiftattack.runtime.precision import autocast, check_precision

__all__ = ["ModelRunner", "resolve_device", "margins", "checked_logits", "is_out_of_memory"]


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (CUDA, or the CPU allocator giving up)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and (
        "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc).lower())


def checked_logits(model: Callable[[Tensor], Tensor], x: Tensor, classes: int | None = None,
                   pass_oom: bool = False) -> Tensor:
    """``model(x)`` as logits (B, classes), or a :class:`ModelError` saying what went wrong.

    Any exception the model raises and any malformed output (not a tensor, not
    (B, classes), another class count than ``classes``, NaN or Inf) becomes a
    ModelError with the input shape or what was returned. Out of memory is
    re-raised as it is when ``pass_oom`` (the caller retries with smaller batches).
    """
    try:
        out = model(x)
    except Exception as exc:
        if is_out_of_memory(exc):
            if pass_oom:
                raise
            raise ModelError(f"out of memory on a batch of {x.shape[0]} inputs of shape "
                             f"{tuple(x.shape[1:])}; lower --batch-size") from exc
        raise ModelError(
            f"the model raised {type(exc).__name__} on input of shape {tuple(x.shape)}: {exc}"
        ) from exc
    if not isinstance(out, Tensor):
        raise ModelError(f"the model must return a logits tensor, got {type(out).__name__}")
    if out.dim() != 2 or out.shape[0] != x.shape[0] or out.shape[1] < 1:
        raise ModelError(
            f"the model must return logits of shape ({x.shape[0]}, classes) for {x.shape[0]} inputs; "
            f"got {tuple(out.shape)}")
    if classes is not None and out.shape[1] != classes:
        raise ModelError(f"the model returned {out.shape[1]} classes, earlier {classes}")
    finite = torch.isfinite(out).all(dim=1)
    if not bool(finite.all()):
        raise NonFiniteLogits(int((~finite).nonzero()[0, 0]))
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) picks CUDA when available, else CPU; other names are checked."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SpecError(f"invalid device {device!r}; expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def margins(logits: Tensor, labels: Tensor) -> Tensor:
    """Logit margin: true-class logit minus the largest other logit.

    Shapes: logits (B, K), labels (B,) int64 -> (B,). Negative means misclassified.
    """
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true - others.amax(dim=1)


class ModelRunner:
    """Calls a classifier on a device, checking that it returns finite (B, K) logits.

    Args:
        model: an ``nn.Module`` or any callable mapping (B, C, H, W) floats in
            [0, 1] to logits (B, K) (e.g. a ``foolbox.PyTorchModel``).
        device: where inputs are moved before the call.
        dtype: floating dtype of the inputs.
        channels_last: keep the model and its inputs in channels-last memory format
            (``nn.Module`` models only); faster for convolutional networks on most CPUs
            and GPUs (``benchmarks/perf_options.py`` measures it).
        compile: wrap the model in ``torch.compile`` (the first call compiles, which
            takes tens of seconds; pays on long runs).
        precision: ``fp32``, or ``bf16`` / ``fp16`` to run the model under ``torch.autocast``
            with that dtype (:mod:`~shiftattack.runtime.precision`); logits are returned as
            float32 either way, so margins add no rounding of their own.

    The first call records the number of classes K; later calls must agree.
    """

    def __init__(self, model: Callable[[Tensor], Tensor], device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, *, channels_last: bool = False,
                 compile: bool = False, precision: str = "fp32") -> None:
        self.device = resolve_device(device)
        self.dtype = dtype
        check_precision(precision, self.device)
        self.precision = precision
        self.channels_last = channels_last and isinstance(model, nn.Module)
        if isinstance(model, nn.Module):
            model = model.to(self.device).eval()
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
        if compile:
            model = torch.compile(model)
        self.model = model
        self.num_classes: int | None = None
        #: the largest batch the model has been given since an out-of-memory error (None: no limit)
        self.max_batch: int | None = None

    def __call__(self, x: Tensor) -> Tensor:
        """Logits (B, K) for inputs (B, C, H, W), under ``inference_mode``."""
        with torch.inference_mode():
            return self.forward(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits with autograd enabled (for first-order attacks).

        Out of memory halves the batch and retries (with one :class:`BatchSizeWarning`
        per halving); the smaller size is kept for later calls. One input that does
        not fit is a :class:`ModelError`.
        """
        x = x.to(device=self.device, dtype=self.dtype)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        b = x.shape[0]
        if self.max_batch is not None and b > self.max_batch:
            step = self.max_batch  # a later halving applies within each piece
            return torch.cat([self.forward(x[s : s + step]) for s in range(0, b, step)])
        try:
            with autocast(self.precision, self.device):
                out = checked_logits(self.model, x, self.num_classes, pass_oom=True)
        except NonFiniteLogits as exc:
            if self.precision == "fp32":
                raise
            raise NonFiniteLogits(exc.row, precision=self.precision) from None
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if b == 1:
                raise ModelError(f"out of memory on a single input of shape {tuple(x.shape[1:])} on "
                                 f"{self.device}; use a smaller input size or another device") from exc
            del exc
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.max_batch = (b + 1) // 2
            warnings.warn(f"out of memory on {self.device} with a batch of {b}; continuing with batches of "
                          f"{self.max_batch} (a --batch-size of {self.max_batch} or less avoids the retry)",
                          BatchSizeWarning, stacklevel=2)
            return self.forward(x)
        if self.num_classes is None:
            self.num_classes = int(out.shape[1])
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out

    def check_labels(self, labels: Tensor, sample: Tensor) -> None:
        """Raise if labels fall outside the model's classes (runs the model once on ``sample``)."""
        if self.num_classes is None:
            self(sample[:1])
        assert self.num_classes is not None
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ModelError(
                f"labels range over [{int(labels.min())}, {int(labels.max())}] but the model has "
                f"{self.num_classes} classes (expected labels in [0, {self.num_classes - 1}])")
