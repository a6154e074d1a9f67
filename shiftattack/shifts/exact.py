"""Exact whole-pixel shifts and crop windows: pure indexing, bit-exact.

The machinery behind :func:`shiftattack.shifts.shift` and
:func:`shiftattack.shifts.crop_window` (the public names live there). Per-image
shifts are applied by slicing each group of equal shifts when a batch holds
few distinct ones (the attacks' member-major batches), otherwise by computing
every output pixel's source pixel and reading it in one indexing pass; neither
copies or pads the selected images first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack.errors import ShapeError, SpecError, check_shape

__all__ = [
    "INTEGER_MODES",
    "INTERPOLATIONS",
    "MODES",
    "ShiftArg",
    "crop_gather",
    "crop_window",
    "shift",
    "shift_gather",
]

#: Border modes of an integer shift of the image itself.
INTEGER_MODES = ("circular", "zero", "reflect", "replicate")
#: Every mode the attacks accept (``crop`` needs a canvas larger than the input).
MODES = INTEGER_MODES + ("crop",)
#: How a sub-pixel member is applied (``exact``: whole pixels only).
INTERPOLATIONS = ("exact", "bilinear", "fourier")

ShiftArg = int | Tensor


def _as_shift_vector(d: ShiftArg, n: int, device: torch.device, name: str) -> Tensor:
    """Return an int64 tensor of shape (n,) from an int or an integer tensor (n,) or ()."""
    if isinstance(d, Tensor):
        if d.is_floating_point() or d.is_complex():
            raise SpecError(f"{name} must be integer for an exact shift, got dtype {d.dtype}")
        if d.dim() == 0:
            d = d.expand(n)
        if d.shape != (n,):
            raise ShapeError(f"{name} must be an int or a tensor of shape ({n},), got {tuple(d.shape)}")
        return d.to(device=device, dtype=torch.long)
    if isinstance(d, bool) or not isinstance(d, int):
        raise SpecError(f"{name} must be an int or an integer tensor, got {type(d).__name__}")
    return torch.full((n,), d, dtype=torch.long, device=device)


def _gather(src: Tensor, index: Tensor | None, rows: Tensor, cols: Tensor) -> Tensor:
    """``out[b, c, i, j] = src[index[b], c, rows[b, i], cols[b, j]]`` in one indexing pass.

    Shapes: src (N, C, Hs, Ws); index (B,) int64 or None (= arange(N)); rows (B, h);
    cols (B, w); returns (B, C, h, w). No padded or per-pair copy of the images is made.
    """
    b = rows.shape[0]
    if index is None:
        index = torch.arange(b, device=src.device)
    channels = torch.arange(src.shape[1], device=src.device)
    return src[index[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None],
               cols[:, None, None, :]]


def _source_coords(d: Tensor, size: int, mode: str) -> tuple[Tensor, Tensor | None]:
    """Source coordinates (B, size) of a shift by ``d`` (B,) px along one axis.

    Returns the indices into the unshifted axis and, in ``zero`` mode, the mask
    of positions that come from inside the image (the rest take the fill).
    """
    pos = torch.arange(size, device=d.device)[None, :] - d[:, None]
    if mode == "circular":
        return pos % size, None
    if mode == "replicate":
        return pos.clamp(0, size - 1), None
    if mode == "reflect":  # mirror about the edge pixels, which are not repeated
        if size == 1:
            return torch.zeros_like(pos), None
        period = 2 * (size - 1)
        p = pos.abs() % period
        return torch.where(p >= size, period - p, p), None
    return pos.clamp(0, size - 1), (pos >= 0) & (pos < size)


def shift_gather(x: Tensor, index: Tensor | None, dx: Tensor, dy: Tensor, mode: str = "circular",
                 fill: float = 0.0) -> Tensor:
    """Exact per-row shifts of images picked by ``index``: ``shift(x[index], dx, dy, mode)``.

    Computes each output pixel's source pixel and reads it in one indexing pass,
    without copying ``x[index]`` or padding it first (the attacks' hot path).

    Args:
        x: images (N, C, H, W), any dtype.
        index: (B,) int64 rows of ``x`` (None: all N, in order).
        dx, dy: (B,) int64 shifts in pixels.
        mode: ``circular``, ``zero``, ``reflect`` or ``replicate``.
        fill: vacated value in ``zero`` mode.

    Returns:
        Tensor (B, C, H, W), bit-exact.
    """
    h, w = x.shape[-2:]
    k = int(torch.maximum(dx.abs().max(), dy.abs().max())) if dx.numel() else 0
    _check_pad(k, h, w, mode)
    grouped = _grouped(x, index, dx, dy, lambda part, a, b: _shift_scalar(part, a, b, mode, fill))
    if grouped is not None:
        return grouped
    rows, row_ok = _source_coords(dy, h, mode)
    cols, col_ok = _source_coords(dx, w, mode)
    out = _gather(x, index, rows, cols)
    if row_ok is not None and col_ok is not None:
        inside = row_ok[:, None, :, None] & col_ok[:, None, None, :]
        out = out.masked_fill(~inside, fill)
    return out


#: Up to this many distinct shifts in one call, each group is shifted by slicing (a contiguous
#: copy, several times faster than per-pixel indexing); the attacks' member-major batches hold
#: one to three.
_MAX_GROUPS = 8


def _grouped(src: Tensor, index: Tensor | None, dx: Tensor, dy: Tensor, one: Callable) -> Tensor | None:
    """Apply ``one(rows, dx, dy)`` per distinct (dx, dy), or None when there are too many groups."""
    key = torch.stack([dx, dy], dim=1)
    distinct, group = torch.unique(key, dim=0, return_inverse=True)
    if distinct.shape[0] > _MAX_GROUPS:
        return None
    rows = torch.arange(dx.numel(), device=src.device) if index is None else index
    if distinct.shape[0] == 1:
        return one(src.index_select(0, rows), int(distinct[0, 0]), int(distinct[0, 1]))
    out: Tensor | None = None
    for g, (ddx, ddy) in enumerate(distinct.tolist()):
        sel = (group == g).nonzero().squeeze(1)
        part = one(src.index_select(0, rows[sel]), ddx, ddy)
        if out is None:
            out = part.new_empty((dx.numel(), *part.shape[1:]))
        out[sel] = part
    return out


def _window_coords(canvas_size: int, size: int, d: Tensor) -> Tensor:
    """Rows (or columns) (B, size) of the window moved by content shift ``d`` (B,)."""
    start = (canvas_size - size) // 2 - d
    return start[:, None] + torch.arange(size, device=d.device)[None, :]


def crop_gather(canvas: Tensor, index: Tensor | None, dx: Tensor, dy: Tensor,
                size: tuple[int, int]) -> Tensor:
    """Windows of canvases picked by ``index``: ``crop_window(canvas[index], dx, dy, size)``.

    Shapes: canvas (N, C, Hs, Ws); index (B,) or None; dx, dy (B,) int64; returns
    (B, C, h, w), bit-exact. Raises SpecError when a window would leave the canvas.
    """
    hs, ws = canvas.shape[-2:]
    h, w = size
    if h > hs or w > ws:
        raise SpecError(f"crop window {h}x{w} is larger than the canvas {hs}x{ws}")
    lo_x, hi_x = -(ws - w - (ws - w) // 2), (ws - w) // 2
    lo_y, hi_y = -(hs - h - (hs - h) // 2), (hs - h) // 2
    if dx.numel() and (int(dx.min()) < lo_x or int(dx.max()) > hi_x or int(dy.min()) < lo_y
                       or int(dy.max()) > hi_y):
        raise SpecError(
            f"crop shift leaves the {hs}x{ws} canvas: a {h}x{w} window admits "
            f"dx in [{lo_x}, {hi_x}], dy in [{lo_y}, {hi_y}]")
    top, left = (hs - h) // 2, (ws - w) // 2

    def window(part: Tensor, ddx: int, ddy: int) -> Tensor:
        return part[..., top - ddy : top - ddy + h, left - ddx : left - ddx + w].contiguous()

    grouped = _grouped(canvas, index, dx, dy, window)
    if grouped is not None:
        return grouped
    return _gather(canvas, index, _window_coords(hs, h, dy), _window_coords(ws, w, dx))


def _pad_mode(mode: str) -> str:
    return {"zero": "constant", "reflect": "reflect", "replicate": "replicate"}[mode]


def shift(x: Tensor, dx: ShiftArg, dy: ShiftArg, mode: str = "circular", fill: float = 0.0) -> Tensor:
    """Shift images by whole pixels, exactly (no interpolation).

    Args:
        x: images, shape (N, C, H, W), any dtype and device.
        dx: pixels to move the content right; an int or an integer tensor (N,).
        dy: pixels to move the content down; an int or an integer tensor (N,).
        mode: ``circular``, ``zero``, ``reflect`` or ``replicate`` (module docstring).
        fill: value of the vacated border in ``zero`` mode.

    Returns:
        Tensor (N, C, H, W), same dtype and device, bit-exact.

    Examples:
        >>> x = torch.arange(9.0).reshape(1, 1, 3, 3)
        >>> shift(x, 1, 0, "zero")[0, 0]
        tensor([[0., 0., 1.],
                [0., 3., 4.],
                [0., 6., 7.]])
    """
    check_shape(x, ["N", "C", "H", "W"], "x")
    if mode not in INTEGER_MODES:
        raise SpecError(f"unknown shift mode {mode!r}; expected one of {', '.join(INTEGER_MODES)}")
    n, _, h, w = x.shape
    if isinstance(dx, int) and isinstance(dy, int) and not isinstance(dx, bool):
        return _shift_scalar(x, dx, dy, mode, fill)
    dxv = _as_shift_vector(dx, n, x.device, "dx")
    dyv = _as_shift_vector(dy, n, x.device, "dy")
    if n == 0:
        return x.clone()
    return shift_gather(x, None, dxv, dyv, mode, fill)


def _check_pad(k: int, h: int, w: int, mode: str) -> None:
    if mode == "reflect" and k >= min(h, w):
        raise SpecError(
            f"reflect shift of {k} px needs |dx|, |dy| < image size {min(h, w)} px"
        )


def _shift_scalar(x: Tensor, dx: int, dy: int, mode: str, fill: float) -> Tensor:
    """One shift for the whole batch: roll or pad-and-slice (fast path, still exact)."""
    h, w = x.shape[-2:]
    if mode == "circular":
        return torch.roll(x, (dy, dx), dims=(-2, -1))
    k = max(abs(dx), abs(dy))
    if k == 0:
        return x.clone()
    _check_pad(k, h, w, mode)
    if mode == "zero":
        padded = F.pad(x, (k, k, k, k), mode="constant", value=fill)
    else:
        padded = F.pad(x, (k, k, k, k), mode=_pad_mode(mode))
    return padded[..., k - dy : k - dy + h, k - dx : k - dx + w].clone()


def crop_window(canvas: Tensor, dx: ShiftArg, dy: ShiftArg, size: tuple[int, int]) -> Tensor:
    """Take the ``size`` window of a larger canvas, moved so content shifts by (dx, dy).

    Args:
        canvas: source images, shape (N, C, Hs, Ws).
        dx, dy: content shift in pixels; ints or integer tensors (N,).
        size: window size ``(h, w)`` in pixels, at most the canvas size.

    Returns:
        Tensor (N, C, h, w), bit-exact copy of the window.

    Raises:
        SpecError: when a window would leave the canvas.
    """
    check_shape(canvas, ["N", "C", "Hs", "Ws"], "canvas")
    n = canvas.shape[0]
    dxv = _as_shift_vector(dx, n, canvas.device, "dx")
    dyv = _as_shift_vector(dy, n, canvas.device, "dy")
    return crop_gather(canvas, None, dxv, dyv, size)


