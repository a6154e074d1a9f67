"""Symbolic bounds over a small parameter box, pushed forward layer by layer.

Every neuron z of a layer is written as one affine function of a parameter vector
``p`` in a box ``[p_lo, p_hi]`` (P parameters; here P = 3: the two sub-pixel offsets
and their product) plus an error interval that does not depend on ``p``:

    z(p) in F(p) + [e_lo, e_hi]  and  low <= z(p) <= high  for every p in the box.

``F`` is stored as a tensor (B, P + 1, *S): slot 0 the constant, slots 1..P the
coefficients. Affine layers map ``F`` exactly (so the cancellations that make a
smooth shift move a convolution's output little are kept); the non-linear
layers use relaxations with the same slope below and above (ReLU:
``s z <= relu(z) <= s z + t``, the modulus: two parallel planes), so only their
gap enters the error interval. This is the symbolic-interval / zonotope-with-box-
errors idea; because P is tiny, it costs a few forward passes.

The concrete interval of every layer is the intersection of ``F``'s extremes plus
the error with interval arithmetic (IBP) on the previous interval, so it is never
looser than plain interval arithmetic. Every rule is sound in real arithmetic; the
propagation runs in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Bounds",
    "concretize",
    "form_range",
    "positive_linear",
    "signed_linear",
    "channel_affine",
    "relu",
    "relu_relaxation",
    "max_pool",
    "max_pool_selection",
    "max_pool_upper_line",
    "gather_flat",
    "modulus",
    "modulus_planes",
    "add",
    "cat",
    "add_const",
    "mul_const",
]


@dataclass
class Bounds:
    """Symbolic and interval bounds of one tensor of shape (B, *S) over a parameter box.

    Attributes:
        form: the affine part F, (B, P + 1, *S).
        e_lo, e_hi: the error interval, (B, *S).
        low, high: concrete lower and upper bounds, (B, *S).
        box_lo, box_hi: the parameter box, (B, P).
    """

    form: Tensor
    e_lo: Tensor
    e_hi: Tensor
    low: Tensor
    high: Tensor
    box_lo: Tensor
    box_hi: Tensor
    product: bool = False

    @property
    def shape(self) -> torch.Size:
        return self.low.shape

    def form_range(self) -> tuple[Tensor, Tensor]:
        """Minimum and maximum of F over the box, (B, *S) each."""
        return form_range(self.form, self.box_lo, self.box_hi, self.product)

    def with_(self, form: Tensor, e_lo: Tensor, e_hi: Tensor, low: Tensor, high: Tensor) -> Bounds:
        """New bounds with the interval intersected with the symbolic part's range."""
        fmin, fmax = form_range(form, self.box_lo, self.box_hi, self.product)
        lo = torch.maximum(low, fmin + e_lo)
        hi = torch.maximum(torch.minimum(high, fmax + e_hi), lo)  # the max only absorbs rounding
        return Bounds(form, e_lo, e_hi, lo, hi, self.box_lo, self.box_hi, self.product)


def exact(
    form: Tensor, low: Tensor, high: Tensor, box_lo: Tensor, box_hi: Tensor, product: bool = False
) -> Bounds:
    """Bounds of a tensor that *is* the affine form (no error), with a known interval.

    ``product``: the third parameter is the product of the first two (see :func:`concretize`).
    """
    zero = torch.zeros_like(low)
    return Bounds(form, zero, zero.clone(), low, high, box_lo, box_hi, product)


def _expand(box: Tensor, ndim: int) -> Tensor:
    return box.reshape(*box.shape, *([1] * (ndim - 2)))


def concretize(form: Tensor, box_lo: Tensor, box_hi: Tensor, lower: bool, product: bool = False) -> Tensor:
    """Minimum (``lower``) or maximum of the affine ``form`` (B, P+1, *S) over the box: (B, *S).

    With ``product`` (P = 3, the third parameter being the product of the first two) only
    the points with p3 = p1 p2 are possible; there the form is bilinear in (p1, p2), so its
    extremes are at the four corners (p1, p2) in {lo, hi}^2, which is exact and tighter.
    """
    if product:
        return _bilinear_extreme(form, box_lo, box_hi, lower)
    coef = form[:, 1:]
    lo, hi = _expand(box_lo, coef.dim()), _expand(box_hi, coef.dim())
    take_lo = (coef > 0) if lower else (coef < 0)
    return form[:, 0] + torch.where(take_lo, coef * lo, coef * hi).sum(dim=1)


def form_range(form: Tensor, box_lo: Tensor, box_hi: Tensor, product: bool = False) -> tuple[Tensor, Tensor]:
    """``(min, max)`` of the affine ``form`` (B, P+1, *S) over the box, (B, *S) each.

    See :func:`concretize`.
    """
    return (
        concretize(form, box_lo, box_hi, lower=True, product=product),
        concretize(form, box_lo, box_hi, lower=False, product=product),
    )


def _bilinear_extreme(form: Tensor, box_lo: Tensor, box_hi: Tensor, lower: bool) -> Tensor:
    """Min (``lower``) or max of ``c + f1 a + f2 b + f3 a b`` over a in [a0, a1], b in [b0, b1].

    Bilinear, so extreme at a corner: for each end of a, the form is ``c + f1 a + g b`` with
    ``g = f2 + f3 a``, whose extreme over b is at b0 or b1. Equals the minimum over the
    four corners, with fewer passes over the (large) form.
    """
    c, f1, f2, f3 = form.unbind(dim=1)
    v = (-1,) + (1,) * (c.dim() - 1)
    a0, a1 = box_lo[:, 0].reshape(v), box_hi[:, 0].reshape(v)
    b0, b1 = box_lo[:, 1].reshape(v), box_hi[:, 1].reshape(v)
    pick = torch.minimum if lower else torch.maximum
    best = []
    for a in (a0, a1):
        g = f2 + f3 * a
        best.append(f1 * a + pick(g * b0, g * b1))
    return c + pick(best[0], best[1])


def _on_form(fn: Callable[[Tensor], Tensor], form: Tensor) -> Tensor:
    """Apply a batch-wise linear map to every slot of a form: (B, P+1, *S) -> (B, P+1, *S')."""
    b, q = form.shape[:2]
    out = fn(form.reshape(b * q, *form.shape[2:]))
    return out.reshape(b, q, *out.shape[1:])


def positive_linear(x: Bounds, fn: Callable[[Tensor], Tensor]) -> Bounds:
    """A linear map with non-negative weights and no offset (pooling averages, blur, pad, crop, flatten)."""
    return x.with_(_on_form(fn, x.form), fn(x.e_lo), fn(x.e_hi), fn(x.low), fn(x.high))


def signed_linear(
    x: Bounds, full: Callable[[Tensor], Tensor], absolute: Callable[[Tensor], Tensor], bias: Tensor | None
) -> Bounds:
    """An affine map ``W z + b`` given as ``W`` and ``|W|`` (both without bias) and ``b``.

    F maps exactly; the error and the interval by centre ``W c`` and radius ``|W| r``.
    """
    form = _on_form(full, x.form)
    ec, er = full((x.e_lo + x.e_hi) / 2), absolute((x.e_hi - x.e_lo) / 2)
    c, r = full((x.low + x.high) / 2), absolute((x.high - x.low) / 2)
    if bias is not None:
        form[:, 0] += bias
        c = c + bias
    return x.with_(form, ec - er, ec + er, c - r, c + r)


def _interval_scale(s: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """``s * [lo, hi]`` for element-wise s of any sign."""
    return torch.minimum(s * lo, s * hi), torch.maximum(s * lo, s * hi)


def channel_affine(x: Bounds, scale: Tensor, shift: Tensor) -> Bounds:
    """``y = scale * z + shift`` per channel (dim 1 of z): batch norm in eval mode, normalisation."""
    view = (1, -1) + (1,) * (x.low.dim() - 2)
    s, t = scale.to(x.low).reshape(view), shift.to(x.low).reshape(view)
    form = s.unsqueeze(1) * x.form
    form[:, 0] += t
    e_lo, e_hi = _interval_scale(s, x.e_lo, x.e_hi)
    low, high = _interval_scale(s, x.low, x.high)
    return x.with_(form, e_lo, e_hi, low + t, high + t)


def add_const(x: Bounds, c: Tensor) -> Bounds:
    """``z + c`` for a constant tensor or number broadcasting like z."""
    c = torch.as_tensor(c).to(x.low)
    form = x.form.clone()
    form[:, 0] += c
    return x.with_(form, x.e_lo, x.e_hi, x.low + c, x.high + c)


def mul_const(x: Bounds, c: Tensor) -> Bounds:
    """``z * c`` for a constant tensor or number broadcasting like z (any sign)."""
    c = torch.as_tensor(c).to(x.low)
    e_lo, e_hi = _interval_scale(c, x.e_lo, x.e_hi)
    low, high = _interval_scale(c, x.low, x.high)
    return x.with_(x.form * c, e_lo, e_hi, low, high)


def relu_relaxation(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """ReLU relaxation for pre-activation bounds ``low <= z <= high``: ``alpha z <= relu(z) <= s z + t``.

    Exact where the sign is known; where it is not, the upper line is the chord
    ``high (z - low) / (high - low)`` and the lower slope is 1 when ``high >= -low``, else 0 (CROWN's
    adaptive choice; used by the backward pass). Returns ``(alpha, s, t)`` shaped like ``low``.
    """
    active, dead = low >= 0, high <= 0
    unstable = ~(active | dead)
    width = torch.where(unstable, high - low, torch.ones_like(low))
    s = torch.where(unstable, high / width, active.to(low.dtype))
    t = torch.where(unstable, -s * low, torch.zeros_like(low))
    alpha = (active | (unstable & (high >= -low))).to(low.dtype)
    return alpha, s, t


def relu(x: Bounds) -> Bounds:
    """ReLU with the parallel relaxation ``s z <= relu(z) <= s z + t`` (s the chord slope)."""
    _, s, t = relu_relaxation(x.low, x.high)
    return x.with_(
        s.unsqueeze(1) * x.form, s * x.e_lo, s * x.e_hi + t, x.low.clamp_min(0), x.high.clamp_min(0)
    )


def max_pool_selection(low: Tensor, high: Tensor, kernel: int, stride: int, padding: int):
    """For ``max`` over square windows of (N, C, H, W): the element with the largest lower bound.

    Returns ``(index, dominated, best_low, high_max, others_high, own_high)``, each (N, C, Ho, Wo):
    ``index`` the flat position (in H*W) of that element; ``dominated`` where its lower bound is
    at least every *other element of the same window*'s upper bound (then the max is that
    element); the window's largest lower and upper bounds; the largest upper bound of the
    other elements; the chosen element's own upper bound. Windows may overlap (stride < kernel).
    """
    n, c, h, w = low.shape

    def windows(t: Tensor) -> Tensor:
        if padding:
            t = F.pad(t, (padding,) * 4, value=float("-inf"))
        cols = F.unfold(t.reshape(n * c, 1, *t.shape[-2:]), kernel, stride=stride)
        return cols.reshape(n, c, kernel * kernel, -1)

    lw, hw = windows(low), windows(high)
    best_low, loc = lw.max(dim=2)  # (N, C, L)
    high_max = hw.max(dim=2).values
    own_high = hw.gather(2, loc.unsqueeze(2)).squeeze(2)
    others = hw.scatter(2, loc.unsqueeze(2), float("-inf")).max(dim=2).values
    ho, wo = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    oy = (torch.arange(ho, device=low.device) * stride - padding).repeat_interleave(wo)
    ox = (torch.arange(wo, device=low.device) * stride - padding).repeat(ho)
    index = (oy + loc // kernel) * w + (ox + loc % kernel)
    shape = (n, c, ho, wo)
    return (
        index.reshape(shape),
        (best_low >= others).reshape(shape),
        best_low.reshape(shape),
        high_max.reshape(shape),
        others.reshape(shape),
        own_high.reshape(shape),
    )


def max_pool_upper_line(best_low: Tensor, others_high: Tensor, own_high: Tensor) -> tuple[Tensor, Tensor]:
    """An upper line ``max_i z_i <= s z_j + t`` in the chosen element z_j of a window it does not dominate.

    Every other element is at most ``U = others_high``, so ``max_i z_i <= max(z_j, U)``, a
    convex function of ``z_j`` in [l_j, u_j]; the chord through its values at the two ends,
    ``(l_j, U)`` and ``(u_j, max(u_j, U))``, lies above it: slope ``s = (u_j - U)^+ / (u_j - l_j)``
    in [0, 1), ``t = U - s l_j``. It is never above the constant ``max(u_j, U)``.
    Returns ``(s, t)`` shaped like the inputs (only meaningful where ``l_j < U``).
    """
    width = (own_high - best_low).clamp_min(torch.finfo(best_low.dtype).tiny)
    s = ((own_high - others_high).clamp_min(0) / width).clamp(0, 1)
    s = torch.where(others_high > best_low, s, torch.zeros_like(s))
    return s, others_high - s * best_low


def gather_flat(t: Tensor, index: Tensor) -> Tensor:
    """t (B, *Q, C, H, W) and index (B, C, Ho, Wo) flat in H*W -> (B, *Q, C, Ho, Wo)."""
    extra = t.dim() - 4
    b, c = index.shape[:2]
    idx = index.flatten(2).reshape(b, *([1] * extra), c, -1).expand(*t.shape[:-2], -1)
    return t.flatten(-2).gather(-1, idx).reshape(*t.shape[:-2], *index.shape[-2:])


def _corner_values(form: Tensor, box_lo: Tensor, box_hi: Tensor, product: bool = False) -> Tensor:
    """The form's values at the corners of the box: (2^P, B, *S); with ``product`` (P = 3, p3 = p1 p2)
    at the four feasible corners only: (4, B, *S)."""
    p = box_lo.shape[1]
    view = (-1,) + (1,) * (form.dim() - 2)
    out = []
    if product:
        for a in (box_lo[:, 0], box_hi[:, 0]):
            for b in (box_lo[:, 1], box_hi[:, 1]):
                a_, b_ = a.reshape(view), b.reshape(view)
                out.append(form[:, 0] + form[:, 1] * a_ + form[:, 2] * b_ + form[:, 3] * (a_ * b_))
        return torch.stack(out)
    for k in range(2**p):
        pick = torch.tensor([(k >> i) & 1 for i in range(p)], dtype=torch.bool, device=box_lo.device)
        corner = torch.where(pick, box_hi, box_lo)  # (B, P)
        out.append(form[:, 0] + (form[:, 1:] * _expand(corner, form.dim())).sum(dim=1))
    return torch.stack(out)


def max_pool(x: Bounds, kernel: int, stride: int, padding: int) -> Bounds:
    """Max-pool: the form of the element j with the largest lower bound, plus an error that covers the window.

    Below: ``max_i z_i >= z_j``. Above: ``max_i F_i`` is convex in the parameters, so
    over the box it lies below any plane that lies above it at the box's corners;
    with j's slopes that plane is ``F_j + max_corners(max_i F_i - F_j)``, and the
    errors add ``max_i e_hi_i``. Where j dominates its window the max is z_j exactly.
    """
    index, dominated, best_l, u_max, _, _ = max_pool_selection(x.low, x.high, kernel, stride, padding)
    form = gather_flat(x.form, index)
    e_lo, e_hi = gather_flat(x.e_lo, index), gather_flat(x.e_hi, index)
    corners = _corner_values(x.form, x.box_lo, x.box_hi, x.product)  # (corners, B, C, H, W)
    flat = corners.flatten(0, 1)
    window_max = F.max_pool2d(flat, kernel, stride, padding).reshape(corners.shape[0], *index.shape)
    own = _corner_values(form, x.box_lo, x.box_hi, x.product)
    gap = (window_max - own).amax(dim=0).clamp_min(0)
    e_window = F.max_pool2d(x.e_hi, kernel, stride, padding)
    e_hi = torch.where(dominated, e_hi, gap + e_window)
    return x.with_(form, e_lo, e_hi, best_l, u_max)


def _norm(a: Tensor, b: Tensor, eps: float) -> Tensor:
    return torch.sqrt(a * a + b * b + eps)


def modulus_planes(lr: Tensor, ur: Tensor, li: Tensor, ui: Tensor, eps: float):
    """Two parallel planes bounding ``f = sqrt(re^2 + im^2 + eps)`` over the box [lr, ur] x [li, ui].

    The slopes are those of the tangent plane at the box's centre (a convex function
    lies above every tangent); the upper plane is that tangent raised by the largest
    gap at the four corners (``f`` minus a plane is convex, so its maximum over the box
    is at a corner). Returns ``(ar, ai, cl, cu)``: ``ar re + ai im + cl <= f <= ar re + ai im + cu``.
    """
    cr, ci = (lr + ur) / 2, (li + ui) / 2
    f0 = _norm(cr, ci, eps)
    ar, ai, cl = cr / f0, ci / f0, eps / f0
    corners = [(lr, li), (lr, ui), (ur, li), (ur, ui)]
    cu = torch.stack([_norm(a, b, eps) - ar * a - ai * b for a, b in corners]).amax(dim=0)
    return ar, ai, cl, torch.maximum(cu, cl)


def modulus(z: Bounds, eps: float) -> Bounds:
    """``sqrt(re^2 + im^2 + eps)`` of the two halves of z's channels: (N, 2G, ...) -> (N, G, ...)."""
    g = z.low.shape[1] // 2
    lr, ur, li, ui = z.low[:, :g], z.high[:, :g], z.low[:, g:], z.high[:, g:]
    ar, ai, cl, cu = modulus_planes(lr, ur, li, ui, eps)
    form = ar.unsqueeze(1) * z.form[:, :, :g] + ai.unsqueeze(1) * z.form[:, :, g:]
    re_lo, re_hi = _interval_scale(ar, z.e_lo[:, :g], z.e_hi[:, :g])
    im_lo, im_hi = _interval_scale(ai, z.e_lo[:, g:], z.e_hi[:, g:])
    zero = torch.zeros_like(lr)
    low = _norm(torch.clamp(zero, lr, ur), torch.clamp(zero, li, ui), eps)
    high = torch.stack([_norm(a, b, eps) for a in (lr, ur) for b in (li, ui)]).amax(dim=0)
    return z.with_(form, re_lo + im_lo + cl, re_hi + im_hi + cu, low, high)


def add(a: Bounds, b: Bounds) -> Bounds:
    """Element-wise sum (residual connections)."""
    return a.with_(a.form + b.form, a.e_lo + b.e_lo, a.e_hi + b.e_hi, a.low + b.low, a.high + b.high)


def cat(parts: list[Bounds], dim: int) -> Bounds:
    """Concatenate along tensor dimension ``dim`` (>= 1)."""
    first = parts[0]
    return Bounds(
        torch.cat([p.form for p in parts], dim + 1),
        torch.cat([p.e_lo for p in parts], dim),
        torch.cat([p.e_hi for p in parts], dim),
        torch.cat([p.low for p in parts], dim),
        torch.cat([p.high for p in parts], dim),
        first.box_lo,
        first.box_hi,
        first.product,
    )
