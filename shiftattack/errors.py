"""Typed errors and the one input-check helper every public function uses.

Every error the toolkit raises on bad input is a :class:`ShiftAttackError`, so
the command line can print its message and exit non-zero instead of showing a
traceback from deep inside torch. Messages say what was wrong and what was
expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a tensor is checked, so that ``--help`` need not load it
    import torch

__all__ = [
    "ShiftAttackError",
    "ShapeError",
    "SpecError",
    "DataError",
    "ModelError",
    "OutputError",
    "ConversionError",
    "NonFiniteLogits",
    "PeerFailed",
    "ShiftAttackWarning",
    "DataWarning",
    "BatchSizeWarning",
    "ConversionWarning",
    "check_shape",
    "check_images",
]


class ShiftAttackError(Exception):
    """Base class of every error the toolkit raises on bad input."""


class ShapeError(ShiftAttackError, ValueError):
    """A tensor does not have the expected shape."""


class SpecError(ShiftAttackError, ValueError):
    """A textual specification (threat set, model, data) cannot be parsed."""


class DataError(ShiftAttackError):
    """A dataset is missing, unreadable, empty or inconsistent."""


class ModelError(ShiftAttackError):
    """A model cannot be loaded or returns something other than (N, classes) logits."""


class NonFiniteLogits(ModelError):
    """The model returned NaN or Inf logits.

    Attributes:
        row: the first such row of the batch the model was given.
        image, shift: the first such image (position in the attack's images, or its index in the
            data once renumbered) and its shift (dx, dy[, angle]); None until an attack locates them.
    """

    def __init__(self, row: int, image: int | None = None, shift: tuple[float, ...] | None = None,
                 precision: str = "fp32") -> None:
        self.row, self.image, self.shift, self.precision = row, image, shift, precision
        cause = "" if precision == "fp32" else (
            f" at --precision {precision}" + ("; fp16 overflows above 65504, try bf16 or fp32"
                                              if precision == "fp16" else "; try fp32"))
        where = "" if image is None else (
            f" for image {image}" + ("" if shift is None else f" under the shift {_shift_text(shift)}")
            + " (the first such input)")
        super().__init__(f"the model returned NaN or Inf logits{where}{cause}; expected finite values (check "
                         "the model's forward, its weights file, and its input normalisation)")

    def at(self, image: int, shift) -> NonFiniteLogits:
        """The same error naming ``image`` and its ``shift`` (a tensor or sequence of dx, dy[, angle])."""
        values = tuple(round(float(v), 6) for v in (shift.tolist() if hasattr(shift, "tolist") else shift))
        return NonFiniteLogits(self.row, image, values, self.precision)

    def renumbered(self, offset: int, indices) -> NonFiniteLogits:
        """The same error naming the image by its index in the data: ``indices[offset + image]``."""
        if self.image is None:
            return self
        return NonFiniteLogits(self.row, int(indices[offset + self.image]), self.shift, self.precision)


def _shift_text(shift: tuple[float, ...]) -> str:
    names = ("dx", "dy", "angle")
    return "(" + ", ".join(f"{n}={v:g}" for n, v in zip(names, shift, strict=False) if n != "angle" or v) + ")"


class ConversionError(ModelError):
    """A model conversion (anti-aliasing) found nothing it could convert."""


class OutputError(ShiftAttackError):
    """An output folder cannot be written (exists without --overwrite, not writable)."""


class ShiftAttackWarning(UserWarning):
    """Base class of the toolkit's warnings (the command line prints them as ``warning: ...``)."""


class DataWarning(ShiftAttackWarning):
    """Data were read with a change the user should know of (files skipped, images converted)."""


class BatchSizeWarning(ShiftAttackWarning):
    """A batch did not fit in memory and was split (results are unchanged)."""


class ConversionWarning(ShiftAttackWarning):
    """A model conversion changed nothing (its subsampling is not made of convertible modules)."""


class PeerFailed(ShiftAttackError):
    """Another process of a distributed run failed first; its own message says why."""


def check_shape(x: torch.Tensor, dims: Sequence[str | int], name: str = "input") -> None:
    """Check that ``x`` has ``len(dims)`` dimensions and the fixed sizes given.

    Args:
        x: any tensor.
        dims: one entry per dimension; an ``int`` must match exactly, a ``str``
            is a free name used only in the message, e.g. ``["N", 3, "H", "W"]``.
        name: how the message refers to ``x``.

    Raises:
        ShapeError: naming the expected and the actual shape.
    """
    import torch

    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    expected = "(" + ", ".join(str(d) for d in dims) + ")"
    if x.dim() != len(dims):
        raise ShapeError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    for axis, (want, got) in enumerate(zip(dims, x.shape, strict=True)):
        if isinstance(want, int) and want != got:
            raise ShapeError(
                f"{name} must have shape {expected}, got {tuple(x.shape)} (dimension {axis})"
            )


def check_images(x: torch.Tensor, name: str = "images") -> None:
    """Check a float image batch of shape (N, C, H, W) with finite values.

    Raises:
        ShapeError: wrong rank or a non-floating dtype.
        DataError: NaN or Inf pixels.
    """
    import torch

    check_shape(x, ["N", "C", "H", "W"], name)
    if not x.is_floating_point():
        raise ShapeError(f"{name} must be a floating-point tensor in [0, 1], got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"{name} contain NaN or Inf values; expected finite pixels in [0, 1]")
