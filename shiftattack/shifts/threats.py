"""Threat sets (which shifts) and threat models (a set plus how a shift is applied).

A :class:`ShiftSet` is parsed from the command-line spec (DESIGN.md):

* ``grid:K`` — every integer ``(dx, dy)`` with ``|dx|, |dy| <= K``: ``(2K+1)^2`` shifts;
* ``grid:K:STEP`` — the same box at sub-pixel step ``STEP`` (``2K / STEP`` must be whole);
* ``random:K:N`` — worst of ``N`` uniform draws per image from the box (integer
  draws for exact shifts, real draws with sub-pixel interpolation);
  ``random:K:N:DEG`` adds a rotation uniform in ``[-DEG, DEG]`` degrees;
* ``list:dx,dy;dx,dy;...`` — an explicit list (``dx,dy,angle`` for a rotation);
* ``rt:K:DEG[:NT:NR]`` — Engstrom et al.'s rotation-translation grid,
  ``linspace(-K, K, NT)^2 x linspace(-DEG, DEG, NR)``, default ``NT=5, NR=31``;
  ``engstrom`` is ``rt:3:30:5:31``.

Every member is a row ``(dx, dy, angle)`` of a float64 tensor (pixels, pixels,
degrees). A set enumerates itself in chunks (:meth:`ShiftSet.chunks`) so that
attacks can stream it with memory independent of its size, and maps any
parameters to its nearest member (:meth:`ShiftSet.project`, :meth:`ShiftSet.contains`).

A :class:`ThreatModel` adds the border ``mode`` (circular, zero, reflect,
replicate or crop), the sub-pixel ``interpolation`` and, in crop mode, the
window size, and applies parameter rows to images (:meth:`ThreatModel.apply`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from shiftattack.errors import SpecError
from shiftattack.shifts.functional import (
    INTERPOLATIONS,
    MODES,
    crop_gather,
    crop_window,
    rotate_translate,
    shift,
    shift_bilinear,
    shift_fourier,
    shift_gather,
)

__all__ = ["ShiftSet", "ThreatModel", "parse_shifts", "command_crop_size", "default_crop_size", "ENGSTROM"]

ENGSTROM = "rt:3:30:5:31"
_GRAMMAR = "grid:K, grid:K:STEP, random:K:N[:DEG], list:dx,dy;dx,dy;..., rt:K:DEG[:NT:NR] or engstrom"


@dataclass(frozen=True)
class ShiftSet:
    """A set of shifts, or a recipe for random draws (``kind == "random"``).

    Attributes:
        spec: the normalised textual spec.
        kind: ``grid``, ``list``, ``rotation`` or ``random``.
        params: float64 (M, 3) rows ``(dx, dy, angle)`` for fixed sets; (0, 3) for random.
        radius: largest ``|dx|``/``|dy|`` in pixels (the box half-width for random).
        max_angle: largest ``|angle|`` in degrees.
        n_draws: draws per image for ``random`` sets, else 0.
    """

    spec: str
    kind: str
    params: Tensor = field(repr=False)
    radius: float
    max_angle: float = 0.0
    n_draws: int = 0

    @property
    def size(self) -> int:
        """Number of members (draws per image for a random set)."""
        return self.n_draws if self.kind == "random" else int(self.params.shape[0])

    @property
    def is_integer(self) -> bool:
        """True when every member is a whole-pixel translation without rotation."""
        if self.kind == "random":
            return self.max_angle == 0 and float(self.radius).is_integer()
        p = self.params
        return bool((p[:, :2] == p[:, :2].round()).all() and (p[:, 2] == 0).all())

    @property
    def has_rotation(self) -> bool:
        return self.max_angle > 0

    def ordered(self, order: str = "radius") -> Tensor:
        """Members sorted for search, float64 (M, 3).

        ``radius``: by Chebyshev radius ``max(|dx|, |dy|)`` ascending (then by
        ``|angle|``), so the first failure found is at the smallest radius — this
        gives the exact accuracy-versus-radius curve from one pass. ``far_first``:
        descending, the shifts most likely to fool first.
        """
        if self.kind == "random":
            raise SpecError("a random set has no fixed members to order; use draw()")
        if order not in ("radius", "far_first"):
            raise SpecError(f"unknown order {order!r}; expected 'radius' or 'far_first'")
        p = self.params
        sign = 1.0 if order == "radius" else -1.0
        # lexicographic: Chebyshev radius, then |angle|, then L1 norm (least significant first)
        keys = [p[:, :2].abs().sum(dim=1), p[:, 2].abs(), p[:, :2].abs().amax(dim=1)]
        idx = torch.arange(p.shape[0])
        for key in keys:
            idx = idx[torch.argsort(sign * key[idx], stable=True)]
        return p[idx]

    def chunks(self, size: int, order: str = "radius") -> Iterator[Tensor]:
        """Yield the ordered members in chunks of at most ``size`` rows (M_i, 3)."""
        p = self.ordered(order)
        for start in range(0, p.shape[0], size):
            yield p[start : start + size]

    def draw(self, n_images: int, integer: bool, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n_draws`` members per image for a random set: float64 (n_images, n_draws, 3)."""
        if self.kind != "random":
            raise SpecError(f"{self.spec} is not a random set")
        shape = (n_images, self.n_draws)
        if integer:
            k = int(self.radius)
            t = torch.randint(-k, k + 1, (*shape, 2), generator=generator).double()
        else:
            t = (torch.rand((*shape, 2), generator=generator, dtype=torch.float64) * 2 - 1) * self.radius
        a = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * self.max_angle
        return torch.cat([t, a[..., None]], dim=-1)

    def project(self, params: Tensor, integer: bool = False) -> Tensor:
        """The member nearest each row: float64 (B, 3) ``(dx, dy, angle)`` -> float64 (B, 3), on the CPU.

        Fixed sets (``grid``, ``list``, ``rotation``): the nearest row of :attr:`params`
        (returned bit for bit) in the Euclidean metric on ``(dx, dy, angle * radius /
        max_angle)`` (pixels: the angle range is scaled onto the translation range),
        ties to the lowest row. For ``grid`` sets, the nearest grid value on each
        axis, ties to the value an even number of steps from the axis's first value
        at or above 0 (for whole-pixel grids that is ``torch.round``, half to even).
        ``random`` sets, whose set is the whole box: clamped into ``|dx|, |dy| <=
        radius``, ``|angle| <= max_angle``, then ``dx, dy`` rounded to whole pixels
        when ``integer`` (exact threat models). NaN counts as 0.
        """
        p = params.detach().to("cpu", torch.float64).reshape(-1, 3).nan_to_num(0.0)  # NaN: 0, Inf: clamped
        if self.kind == "random":
            box = torch.tensor([self.radius, self.radius, self.max_angle], dtype=torch.float64)
            p = torch.maximum(torch.minimum(p, box), -box)
            if integer:
                p[:, :2] = p[:, :2].round()
            return p
        n = math.isqrt(self.params.shape[0])
        if self.kind == "grid" and n * n == self.params.shape[0]:  # rows: dy major, dx minor
            # axis values -K + i * step; i0 = the first value at or above 0, offset o in steps
            step = 2 * self.radius / (n - 1) if n > 1 else 1.0
            start = math.ceil(self.radius / step - 1e-9)
            o = start - self.radius / step
            i = (p[:, :2] / step - o).round() + start  # round: half to even
            i = i.clamp(0, n - 1).long()
            return self.params[i[:, 1] * n + i[:, 0]]
        scale = self.radius / self.max_angle if self.max_angle > 0 and self.radius > 0 else 1.0
        weight = torch.tensor([1.0, 1.0, scale], dtype=torch.float64)
        table = self.params * weight
        out = torch.empty_like(p)
        rows = max(1, 2**22 // max(1, table.shape[0]))  # bounds the (rows, M) distance matrix
        for s in range(0, p.shape[0], rows):
            d = ((p[s : s + rows, None, :] * weight - table) ** 2).sum(-1)
            out[s : s + rows] = self.params[d.argmin(1)]
        return out

    def contains(self, params: Tensor, integer: bool = False, tol: float = 1e-9) -> Tensor:
        """bool (B,): which rows ``(dx, dy, angle)`` of a (B, 3) tensor are members.

        A row is a member of a fixed set when it is within ``tol`` (pixels, degrees)
        of a member in every coordinate (so ``0.125`` steps computed another way still
        match); of a ``random`` set when it lies in the box (to within ``tol``). With
        ``integer`` (exact threat models) ``dx, dy`` must also be whole numbers exactly.
        """
        p = params.detach().to("cpu", torch.float64).reshape(-1, 3)
        if self.kind == "random":
            box = torch.tensor([self.radius, self.radius, self.max_angle], dtype=torch.float64)
            ok = (p.abs() <= box + tol).all(dim=1)
        else:
            ok = ((self.project(p) - p).abs() <= tol).all(dim=1)
        if integer:
            ok &= (p[:, :2] == p[:, :2].round()).all(dim=1)
        return ok & p.isfinite().all(dim=1)

    def to_json(self) -> dict:
        out = {"spec": self.spec, "kind": self.kind, "n_shifts": self.size, "radius": self.radius}
        if self.max_angle:
            out["max_angle_deg"] = self.max_angle
        return out


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"invalid {what} {text!r} in shift spec {spec!r}; expected {_GRAMMAR}") from None
    if not math.isfinite(value):
        raise SpecError(f"{what} must be finite in shift spec {spec!r}")
    return value


def _whole(text: str, what: str, spec: str, minimum: int = 0) -> int:
    value = _number(text, what, spec)
    if not value.is_integer() or value < minimum:
        raise SpecError(f"{what} must be a whole number >= {minimum} in {spec!r}, got {text!r}")
    return int(value)


def _grid(k: float, n: int, angles: Tensor) -> Tensor:
    t = torch.linspace(-k, k, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    dy, dx, a = torch.meshgrid(t, t, angles, indexing="ij")
    return torch.stack([dx.flatten(), dy.flatten(), a.flatten()], dim=1)


def default_crop_size(shifts: ShiftSet, size: tuple[int, int]) -> tuple[int, int]:
    """Crop mode's default window for ``size`` = (H, W) canvases: the canvas minus twice the radius.

    Raises:
        SpecError: the radius leaves no window.
    """
    r = math.ceil(shifts.radius)
    crop = (size[0] - 2 * r, size[1] - 2 * r)
    if min(crop) < 1:
        raise SpecError(f"images of {tuple(size)} px leave no window for shifts of {r} px")
    return crop


def command_crop_size(shifts: ShiftSet, canvas_size: tuple[int, int], canvas_pad: int = 0,
                crop_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The model input (h, w) of crop mode as the command line chooses it (never silently smaller).

    * ``crop_size`` given: that window (e.g. Zhang's 224 of 256 px canvases).
    * a canvas made by padding each image by ``canvas_pad`` px: the original image size
      (canvas minus twice the pad); the shifts' radius must not exceed the pad.
    * neither: an error explaining both options (the library's :func:`default_crop_size`,
      canvas minus twice the radius, would feed the model smaller inputs than its images).

    Raises:
        SpecError: naming the radius and the pad, or the missing option.
    """
    if crop_size is not None:
        return tuple(crop_size)
    r = math.ceil(shifts.radius)
    if canvas_pad > 0:
        if r > canvas_pad:
            raise SpecError(f"the shifts reach {r} px but --canvas-pad is {canvas_pad} px: windows of the image "
                            f"size would leave the canvas; use --canvas-pad {r} (or more), or give --crop-size")
        return (canvas_size[0] - 2 * canvas_pad, canvas_size[1] - 2 * canvas_pad)
    raise SpecError(f"--mode crop needs a canvas larger than the model input: give --canvas-pad P (each "
                    f"{canvas_size[0]}x{canvas_size[1]} image padded by P >= {r} px, windows of the image size; "
                    f"CIFAR-10: --canvas-pad 4) or --crop-size HxW (windows smaller than the images, e.g. "
                    f"Zhang's protocol: --resize 256 --crop-size 224)")


def parse_shifts(spec: str) -> ShiftSet:
    """Parse a shift-set spec (module docstring) into a :class:`ShiftSet`.

    Raises:
        SpecError: naming the bad part and the accepted grammar.

    Examples:
        >>> parse_shifts("grid:1").size
        9
        >>> parse_shifts("engstrom").size
        775
    """
    text = spec.strip()
    if text == "engstrom":
        text = ENGSTROM
    head, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    zero = torch.zeros(1, dtype=torch.float64)
    if head == "grid" and len(parts) in (1, 2):
        k = _whole(parts[0], "grid radius K", spec)
        if len(parts) == 1:
            return ShiftSet(text, "grid", _grid(k, 2 * k + 1, zero), float(k))
        step = _number(parts[1], "grid step", spec)
        n_steps = 2 * k / step if step > 0 else float("nan")
        if not (step > 0 and abs(n_steps - round(n_steps)) < 1e-9):
            raise SpecError(f"grid step must be positive and divide 2K = {2 * k} exactly, got {parts[1]!r}")
        return ShiftSet(text, "grid", _grid(k, round(n_steps) + 1, zero), float(k))
    if head == "random" and len(parts) in (2, 3):
        k = _number(parts[0], "random radius K", spec)
        n = _whole(parts[1], "number of draws N", spec, minimum=1)
        deg = _number(parts[2], "rotation range DEG", spec) if len(parts) == 3 else 0.0
        if k < 0 or deg < 0:
            raise SpecError(f"radius and rotation range must be >= 0 in {spec!r}")
        return ShiftSet(text, "random", torch.zeros(0, 3, dtype=torch.float64), k, deg, n)
    if head == "rt" and len(parts) in (2, 4):
        k = _number(parts[0], "translation range K", spec)
        deg = _number(parts[1], "rotation range DEG", spec)
        nt, nr = (5, 31) if len(parts) == 2 else (
            _whole(parts[2], "translations per axis NT", spec, 1), _whole(parts[3], "rotations NR", spec, 1))
        if k < 0 or deg < 0:
            raise SpecError(f"ranges must be >= 0 in {spec!r}")
        angles = torch.linspace(-deg, deg, nr, dtype=torch.float64) if nr > 1 else zero
        return ShiftSet(text, "rotation", _grid(k, nt, angles), k, deg)
    if head == "list" and rest:
        rows = []
        for item in rest.split(";"):
            values = [v for v in item.split(",")]
            if len(values) not in (2, 3):
                raise SpecError(f"list member {item!r} in {spec!r} must be 'dx,dy' or 'dx,dy,angle'")
            row = [_number(v, "list value", spec) for v in values] + [0.0] * (3 - len(values))
            rows.append(row)
        params = torch.tensor(rows, dtype=torch.float64)
        radius = float(params[:, :2].abs().max())
        return ShiftSet(text, "list", params, radius, float(params[:, 2].abs().max()))
    raise SpecError(f"invalid shift spec {spec!r}; expected {_GRAMMAR}")


@dataclass(frozen=True)
class ThreatModel:
    """A shift set together with how each member is applied to an image.

    Attributes:
        shifts: the :class:`ShiftSet`.
        mode: ``circular``, ``zero``, ``reflect``, ``replicate`` or ``crop``.
        interpolation: ``exact`` (integer members only), ``bilinear`` (between
            exact integer shifts, any mode) or ``fourier`` (circular only).
            Rotations always use bilinear sampling with zero fill.
        fill: value of vacated pixels in ``zero`` mode.
        crop_size: ``(h, w)`` of the model input in crop mode; the images given
            to :meth:`apply` are then canvases at least that large.
    """

    shifts: ShiftSet
    mode: str = "zero"
    interpolation: str = "exact"
    fill: float = 0.0
    crop_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SpecError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise SpecError(
                f"unknown interpolation {self.interpolation!r}; expected {', '.join(INTERPOLATIONS)}")
        if self.interpolation == "exact" and not self.shifts.is_integer:
            raise SpecError(
                f"{self.shifts.spec} has sub-pixel or rotated members; "
                "choose --interp bilinear or fourier")
        if self.interpolation == "fourier" and self.mode != "circular":
            raise SpecError("Fourier shifts are circular by nature; use --mode circular")
        if self.shifts.has_rotation and self.mode != "zero":
            raise SpecError("rotations are defined with zero fill only (Engstrom et al.); use --mode zero")
        if self.mode == "crop" and self.crop_size is None:
            raise SpecError("crop mode needs the window size (crop_size)")

    @property
    def exact(self) -> bool:
        """True when every member is applied by pure indexing (bit-exact)."""
        return self.interpolation == "exact"

    def project(self, params: Tensor) -> Tensor:
        """:meth:`ShiftSet.project` with whole pixels for exact threat models: (B, 3) -> (B, 3)."""
        return self.shifts.project(params, integer=self.exact)

    def contains(self, params: Tensor) -> Tensor:
        """:meth:`ShiftSet.contains` with whole pixels for exact threat models: bool (B,)."""
        return self.shifts.contains(params, integer=self.exact)

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """Size (h, w) the model sees for source images of size (h, w)."""
        return self.crop_size if self.mode == "crop" else (h, w)  # type: ignore[return-value]

    def check_fits(self, h: int, w: int) -> None:
        """Raise SpecError when the set's shifts are too large for (h, w) images."""
        r = math.ceil(self.shifts.radius)
        if self.mode == "crop":
            ch, cw = self.crop_size  # type: ignore[misc]
            if ch > h or cw > w:
                raise SpecError(f"crop window {ch}x{cw} is larger than the {h}x{w} source images")
            room = min((h - ch) // 2, (w - cw) // 2)
            if r > room:
                raise SpecError(
                    f"shifts up to {r} px need a canvas at least {ch + 2 * r}x{cw + 2 * r} for a "
                    f"{ch}x{cw} window; the images are {h}x{w} (use --canvas-pad or a smaller K)")
        elif r >= min(h, w):
            raise SpecError(f"shift radius {r} px is too large for {h}x{w} images (must be < {min(h, w)})")

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        """Apply one member per image.

        Args:
            x: images (B, C, H, W) (canvases in crop mode), floating point.
            params: (B, 3) rows ``(dx, dy, angle)`` (float; may require grad for
                the sub-pixel interpolations).

        Returns:
            Tensor (B, C, h, w), the model inputs.
        """
        dx, dy, angle = params[:, 0], params[:, 1], params[:, 2]
        if self.shifts.has_rotation:
            return rotate_translate(x, angle.to(x.dtype), dx.to(x.dtype), dy.to(x.dtype))
        if self.interpolation == "exact":
            dxi, dyi = dx.round().long(), dy.round().long()
            if self.mode == "crop":
                return crop_window(x, dxi, dyi, self.crop_size)  # type: ignore[arg-type]
            return shift(x, dxi, dyi, self.mode, self.fill)
        if self.interpolation == "fourier":
            return shift_fourier(x, dx.to(x.dtype), dy.to(x.dtype))
        return shift_bilinear(x, dx.to(x.dtype), dy.to(x.dtype), self.mode, self.fill, self.crop_size)

    def apply_to(self, images: Tensor, index: Tensor, params: Tensor) -> Tensor:
        """``apply(images[index], params)``, without copying ``images[index]`` for exact shifts.

        Args:
            images: (N, C, H, W) images (canvases in crop mode).
            index: (B,) int64 rows of ``images``, on their device.
            params: (B, 3) rows ``(dx, dy, angle)``.

        Returns:
            Tensor (B, C, h, w).
        """
        if self.interpolation != "exact" or self.shifts.has_rotation:
            return self.apply(images[index], params)
        dx, dy = params[:, 0].round().long(), params[:, 1].round().long()
        if self.mode == "crop":
            return crop_gather(images, index, dx, dy, self.crop_size)  # type: ignore[arg-type]
        return shift_gather(images, index, dx, dy, self.mode, self.fill)

    def to_json(self) -> dict:
        out = {**self.shifts.to_json(), "mode": self.mode, "interpolation": self.interpolation}
        if self.mode == "zero":
            out["fill"] = self.fill
        if self.crop_size is not None:
            out["crop_size"] = list(self.crop_size)
        return out

