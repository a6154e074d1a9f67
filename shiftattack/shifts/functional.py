"""Shift engine: exact integer shifts, crop windows, sub-pixel and rotation transforms.

Sign convention (the toolkit's contract): a shift ``(dx, dy)`` moves the image
*content* ``dx`` pixels right (towards larger column index) and ``dy`` pixels
down.

* ``circular``: equals ``torch.roll(x, (dy, dx), dims=(-2, -1))``.
* ``zero`` / ``reflect`` / ``replicate``: equals padding by ``K`` on every side
  with :func:`torch.nn.functional.pad` (``constant`` with the fill value,
  ``reflect`` — the edge pixel is not repeated — or ``replicate``) and taking
  the ``H x W`` window whose top-left corner is at ``(K - dy, K - dx)``.
* ``crop``: the model sees an ``h x w`` window of a larger canvas; the window
  of shift ``(0, 0)`` is centred (top-left at ``((Hs - h) // 2, (Ws - w) // 2)``)
  and the shift ``(dx, dy)`` moves it to ``(top - dy, left - dx)``, so the
  content moves right and down as in the other modes.

Integer shifts are bit-exact (pure indexing, no arithmetic on pixel values).
Every function is batched: ``dx`` and ``dy`` may be Python ints (one shift for
the whole batch) or integer tensors of shape ``(N,)`` (one shift per image), so
many shifts are applied to a batch without Python loops over images. All
functions are device- and dtype-agnostic.

Sub-pixel shifts are differentiable in ``(dx, dy)``:

* :func:`shift_bilinear` interpolates bilinearly between the four exact integer
  shifts around ``(dx, dy)`` in any mode (the definition the sound sub-pixel
  certificates use), so it agrees bit for bit with the exact shift at integers;
* :func:`shift_fourier` multiplies the spectrum by a linear phase (circular,
  band-limited; exact for band-limited periodic signals);
* :func:`rotate_translate` rotates about the image centre and translates, with
  zero fill and bilinear sampling (Engstrom et al.'s spatial threat model).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftattack.errors import ShapeError, SpecError, check_shape
from shiftattack.shifts.exact import (
    INTEGER_MODES,
    INTERPOLATIONS,
    MODES,
    crop_gather,
    crop_window,
    shift,
    shift_gather,
)

__all__ = [
    "INTEGER_MODES",
    "INTERPOLATIONS",
    "MODES",
    "shift",
    "crop_gather",
    "crop_window",
    "shift_bilinear",
    "shift_fourier",
    "shift_gather",
    "rotate_translate",
    "Shift",
]


def _as_float_vector(d: float | Tensor, n: int, like: Tensor, name: str) -> Tensor:
    if isinstance(d, Tensor):
        if d.dim() == 0:
            d = d.expand(n)
        if d.shape != (n,):
            raise ShapeError(f"{name} must be a number or a tensor of shape ({n},), got {tuple(d.shape)}")
        return d.to(device=like.device, dtype=like.dtype)
    return torch.full((n,), float(d), device=like.device, dtype=like.dtype)


def shift_bilinear(
    x: Tensor,
    dx: float | Tensor,
    dy: float | Tensor,
    mode: str = "zero",
    fill: float = 0.0,
    size: tuple[int, int] | None = None,
) -> Tensor:
    """Sub-pixel shift: bilinear interpolation between the four exact integer shifts.

    For ``(dx, dy) = (i + a, j + b)`` with integers ``i, j`` and ``a, b`` in [0, 1]
    the result is ``(1-a)(1-b) S(i,j) + a(1-b) S(i+1,j) + (1-a)b S(i,j+1) + ab S(i+1,j+1)``
    where ``S`` is the exact shift in ``mode`` (or the crop window when ``mode`` is
    ``crop``). At integer shifts it equals :func:`shift` bit for bit; it is
    differentiable in ``dx`` and ``dy`` (almost everywhere).

    Args:
        x: images (N, C, H, W), floating point; the canvas (N, C, Hs, Ws) in crop mode.
        dx, dy: shifts in pixels; numbers or float tensors (N,) (may require grad).
        mode: an integer mode or ``crop``.
        fill: vacated value in ``zero`` mode.
        size: window size (h, w) in ``crop`` mode.

    Returns:
        Tensor (N, C, H, W) (or (N, C, h, w) in crop mode).
    """
    check_shape(x, ["N", "C", "H", "W"], "x")
    n = x.shape[0]
    dxf = _as_float_vector(dx, n, x, "dx")
    dyf = _as_float_vector(dy, n, x, "dy")
    # Integer corners i <= dx <= i + 1; at a positive whole dx take i = dx - 1, a = 1, so
    # that a shift of exactly +K only touches shifts within [-K, K] (crop windows stay inside).
    i = torch.ceil(dxf.detach()) - 1
    i = torch.where(dxf.detach() <= 0, torch.floor(dxf.detach()), i)
    j = torch.ceil(dyf.detach()) - 1
    j = torch.where(dyf.detach() <= 0, torch.floor(dyf.detach()), j)
    a = (dxf - i)[:, None, None, None]
    b = (dyf - j)[:, None, None, None]
    il, jl = i.long(), j.long()

    def s(ddx: Tensor, ddy: Tensor) -> Tensor:
        if mode == "crop":
            if size is None:
                raise SpecError("crop mode needs the window size (h, w)")
            return crop_window(x, ddx, ddy, size)
        return shift(x, ddx, ddy, mode, fill)

    # Whole shifts with no gradient wanted need no neighbour (which may not exist, e.g. a
    # crop window without room): the result is the exact shift itself.
    need_x = dxf.requires_grad or bool((a != 0).any())
    need_y = dyf.requires_grad or bool((b != 0).any())
    out = (1 - a) * (1 - b) * s(il, jl)
    if need_x:
        out = out + a * (1 - b) * s(il + 1, jl)
    if need_y:
        out = out + (1 - a) * b * s(il, jl + 1)
    if need_x and need_y:
        out = out + a * b * s(il + 1, jl + 1)
    return out


def shift_fourier(x: Tensor, dx: float | Tensor, dy: float | Tensor) -> Tensor:
    """Band-limited (Fourier) circular sub-pixel shift, differentiable in (dx, dy).

    Multiplies the 2-D spectrum by ``exp(-2 pi i (fx dx + fy dy))``. For an integer
    shift it equals ``torch.roll`` up to float rounding (about 1e-7 for float32: the
    transform runs in float64 with the phase reduced mod 1, whatever the shift).
    On even sizes the Nyquist row and column are real-projected (the result is
    the real part), the usual convention.

    Args:
        x: images (N, C, H, W), floating point.
        dx, dy: shifts in pixels; numbers or tensors (N,).

    Returns:
        Tensor (N, C, H, W), same dtype.
    """
    check_shape(x, ["N", "C", "H", "W"], "x")
    n, _, h, w = x.shape
    dxf = _as_float_vector(dx, n, x, "dx")
    dyf = _as_float_vector(dy, n, x, "dy")
    # The phase in cycles, in float64 and reduced mod 1, so that large shifts lose no precision.
    fy = torch.fft.fftfreq(h, device=x.device, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, device=x.device, dtype=torch.float64)
    phase = fy[None, :, None] * dyf.double()[:, None, None] + fx[None, None, :] * dxf.double()[:, None, None]
    phase = torch.remainder(phase, 1.0)
    ramp = torch.polar(torch.ones_like(phase), -2 * math.pi * phase)  # (N, H, W) complex128
    spectrum = torch.fft.fft2(x.double() if x.dtype != torch.float64 else x) * ramp[:, None]
    return torch.fft.ifft2(spectrum).real.to(x.dtype)


def rotate_translate(
    x: Tensor, angle: float | Tensor, dx: float | Tensor, dy: float | Tensor
) -> Tensor:
    """Rotate about the image centre then translate; zero fill, bilinear sampling.

    A positive ``angle`` (degrees) turns the content counter-clockwise as seen on
    screen; ``(dx, dy)`` then move it right and down, in pixels. Sampling uses
    ``grid_sample(align_corners=False)`` so pixel centres map to pixel centres.
    Differentiable in ``angle``, ``dx`` and ``dy``.

    Args:
        x: images (N, C, H, W), floating point.
        angle: degrees; number or tensor (N,).
        dx, dy: pixels; numbers or tensors (N,).

    Returns:
        Tensor (N, C, H, W).
    """
    check_shape(x, ["N", "C", "H", "W"], "x")
    n, _, h, w = x.shape
    th = _as_float_vector(angle, n, x, "angle") * (math.pi / 180.0)
    tx = _as_float_vector(dx, n, x, "dx")
    ty = _as_float_vector(dy, n, x, "dy")
    cos, sin = torch.cos(th), torch.sin(th)
    # Output pixel q (pixel units, y down) samples input R^T (q - t), R = [[c, s], [-s, c]];
    # in normalised coordinates (x * 2 / W, y * 2 / H) this is D R^T D^-1 (q_n - D t).
    sx, sy = 2.0 / w, 2.0 / h
    a11, a12 = cos, -sin * sx / sy
    a21, a22 = sin * sy / sx, cos
    txn, tyn = tx * sx, ty * sy
    theta = torch.stack(
        [
            torch.stack([a11, a12, -(a11 * txn + a12 * tyn)], dim=1),
            torch.stack([a21, a22, -(a21 * txn + a22 * tyn)], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class Shift(nn.Module):
    """Module form of :func:`shift`, :func:`shift_bilinear` and :func:`shift_fourier`.

    Args:
        dx, dy: the shift in pixels (ints for an exact shift).
        mode: ``circular``, ``zero``, ``reflect`` or ``replicate``.
        interpolation: ``exact`` (integers only), ``bilinear`` or ``fourier``
            (circular only).
        fill: vacated value in ``zero`` mode.

    Shape:
        input (N, C, H, W) -> output (N, C, H, W).

    Examples:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> torch.equal(Shift(2, -1, "circular")(x), torch.roll(x, (-1, 2), dims=(-2, -1)))
        True
    """

    def __init__(
        self,
        dx: float,
        dy: float,
        mode: str = "circular",
        interpolation: str = "exact",
        fill: float = 0.0,
    ) -> None:
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise SpecError(f"unknown interpolation {interpolation!r}; expected {', '.join(INTERPOLATIONS)}")
        if interpolation == "exact" and (dx != int(dx) or dy != int(dy)):
            raise SpecError(f"exact interpolation needs integer shifts, got ({dx}, {dy})")
        if interpolation == "fourier" and mode != "circular":
            raise SpecError("a Fourier shift is circular by nature; use mode='circular'")
        if mode not in INTEGER_MODES:
            raise SpecError(f"unknown shift mode {mode!r}; expected one of {', '.join(INTEGER_MODES)}")
        self.dx, self.dy, self.mode = dx, dy, mode
        self.interpolation, self.fill = interpolation, fill

    def forward(self, x: Tensor) -> Tensor:
        if self.interpolation == "exact":
            return shift(x, int(self.dx), int(self.dy), self.mode, self.fill)
        if self.interpolation == "bilinear":
            return shift_bilinear(x, float(self.dx), float(self.dy), self.mode, self.fill)
        return shift_fourier(x, float(self.dx), float(self.dy))

    def extra_repr(self) -> str:
        return f"dx={self.dx}, dy={self.dy}, mode={self.mode!r}, interpolation={self.interpolation!r}"
