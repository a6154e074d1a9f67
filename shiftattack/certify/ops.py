"""The lowered model's operations (:class:`Op`), how they are emitted, evaluated and folded.

:mod:`.lowering` turns a model into a list of these; :mod:`.propagate` bounds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftattack.certify import linear_bounds as lb
from shiftattack.certify.linear_bounds import Bounds
from shiftattack.errors import ShiftAttackError

__all__ = ["Op", "UnsupportedLayer", "CMOD_EPS", "run_ops", "fold_batch_norm"]

#: eps under the CMod square root (``cmod2d``'s default)
CMOD_EPS = 1e-12


class UnsupportedLayer(ShiftAttackError):
    """The model holds a layer the bound method has no sound rule for."""


@dataclass
class Op:
    """One operation of the lowered model.

    Attributes:
        kind: ``input``, ``affine``, ``relu``, ``maxpool``, ``modulus`` or ``dead`` (merged into a
            later operation, skipped).
        args: ids of the operations whose outputs it takes.
        fn: affine only: the map itself on plain tensors (bias included).
        forward: affine only: the rule on :class:`Bounds` (a list, one per argument).
        meta: ``kernel``, ``stride``, ``padding`` for max-pool.
        name: where it came from, for messages.
    """

    kind: str
    args: list[int]
    fn: Callable[..., Tensor] | None = None
    forward: Callable[[list[Bounds]], Bounds] | None = None
    meta: dict = field(default_factory=dict)
    name: str = ""


class _Ref(int):
    """The id of an operation whose output is an activation (as opposed to a constant)."""


class _Meta:
    """A value computed from an activation's metadata (``x.shape``, ``x.dim()``): known only at run time.

    It may feed assertions and the batch dimension of a reshape, nothing else.
    """


def _deep(v, kind: type) -> bool:
    if isinstance(v, (list, tuple)):
        return any(_deep(t, kind) for t in v)
    if isinstance(v, dict):
        return any(_deep(t, kind) for t in v.values())
    return isinstance(v, kind)


def _conv_op(arg, weight, bias, run, name, geometry) -> Op:
    b4 = None if bias is None else bias.reshape(-1, 1, 1)
    parts = (lambda t: run(t, weight), lambda t: run(t, weight.abs()))

    def fn(t: Tensor) -> Tensor:
        out = run(t, weight)
        return out if b4 is None else out + b4

    meta: dict = {"weight": weight, "bias": bias, "run": run, "geometry": geometry}
    if geometry is not None:
        stride, padding, dilation, groups = geometry

        def transpose(L: Tensor, in_shape: tuple) -> Tensor:
            return torch.nn.grad.conv2d_input(in_shape, weight, L, stride, padding, dilation, groups)

        meta["transpose"] = transpose
    return Op("affine", [arg], fn, lambda xs: lb.signed_linear(xs[0], *parts, b4), meta=meta, name=name)


class Emitter:
    """Appends operations to :attr:`ops` (id 0 is the input) and returns their ids."""

    def __init__(self) -> None:
        self.ops: list[Op] = [Op("input", [], name="input")]

    def emit(self, op: Op) -> int:
        self.ops.append(op)
        return _Ref(len(self.ops) - 1)

    # affine helpers ------------------------------------------------------
    def positive(self, arg: int, fn: Callable[[Tensor], Tensor], name: str) -> int:
        """A linear map with non-negative weights and no offset."""
        return self.emit(Op("affine", [arg], fn, lambda xs: lb.positive_linear(xs[0], fn), name=name))

    def channel_affine(self, arg: int, scale: Tensor, shift: Tensor, name: str) -> int:
        def fn(t: Tensor) -> Tensor:
            v = (1, -1) + (1,) * (t.dim() - 2)
            return t * scale.reshape(v) + shift.reshape(v)

        meta = {"scale": scale, "shift": shift}
        return self.emit(
            Op("affine", [arg], fn, lambda xs: lb.channel_affine(xs[0], scale, shift), meta=meta, name=name)
        )

    def conv(self, arg: int, weight: Tensor, bias: Tensor | None, run, name: str, geometry=None) -> int:
        """A convolution ``run(t, weight) + bias``; ``geometry`` (stride, padding, dilation, groups)
        when it zero-pads by fixed amounts, which gives the backward pass a direct transpose."""
        return self.emit(_conv_op(arg, weight, bias, run, name, geometry))

    def linear(self, arg: int, w: Tensor, b: Tensor | None, name: str) -> int:
        parts = (lambda t: t @ w.T, lambda t: t @ w.abs().T)
        return self.emit(
            Op("affine", [arg], lambda t: F.linear(t, w, b), lambda xs: lb.signed_linear(xs[0], *parts, b),
               name=name)
        )

    def batch_norm(self, arg: int, mean, var, weight, bias, eps: float, name: str) -> int:
        """Batch norm with fixed statistics as one per-channel affine map."""
        if mean is None or var is None:
            raise UnsupportedLayer(f"{name}: batch norm without running statistics uses each batch's own")
        inv = 1.0 / torch.sqrt(var + eps)
        w = weight if weight is not None else torch.ones_like(inv)
        b = bias if bias is not None else torch.zeros_like(inv)
        return self.channel_affine(arg, w * inv, b - mean * w * inv, name)

    def _const(self, args, ids, sign: float, where: str) -> int:
        if ids[0]:
            c = sign * torch.as_tensor(args[1], dtype=torch.float64)
            return self.emit(
                Op("affine", [args[0]], lambda t: t + c, lambda xs: lb.add_const(xs[0], c), name=where)
            )
        c = torch.as_tensor(args[0], dtype=torch.float64)
        neg = self._scale(args[1], torch.tensor(sign, dtype=torch.float64), where) if sign < 0 else args[1]
        return self.emit(Op("affine", [neg], lambda t: t + c, lambda xs: lb.add_const(xs[0], c), name=where))

    def _scale(self, arg: int, c: Tensor, where: str) -> int:
        return self.emit(Op("affine", [arg], lambda t: t * c, lambda xs: lb.mul_const(xs[0], c), name=where))


def fold_batch_norm(ops: list[Op], output: int) -> list[Op]:
    """Merge every per-channel affine map (batch norm, eval) into the convolution feeding it.

    ``s * (W x + b) + t = (s W) x + (s b + t)`` exactly in real arithmetic; the merged
    convolution replaces the affine op (same id) and the convolution, used by nothing
    else, becomes ``dead`` (skipped). One layer fewer to bound, and no interval is
    lost between the two.
    """
    users = [0] * len(ops)
    for op in ops:
        for a in op.args:
            users[a] += 1
    ops = list(ops)
    for k, op in enumerate(ops):
        if "scale" not in op.meta:
            continue
        src_id = op.args[0]
        src = ops[src_id]
        if "weight" not in src.meta or users[src_id] != 1 or src_id == output:
            continue
        scale = torch.as_tensor(op.meta["scale"], dtype=torch.float64).flatten()
        shift = torch.as_tensor(op.meta["shift"], dtype=torch.float64).flatten()
        w = src.meta["weight"]
        b = src.meta["bias"]
        weight = w * scale.to(w).reshape(-1, *([1] * (w.dim() - 1)))
        bias = (b * scale.to(w) if b is not None else 0 * scale.to(w)) + shift.to(w)
        ops[k] = _conv_op(src.args[0], weight, bias, src.meta["run"], f"{src.name}+{op.name}",
                          src.meta["geometry"])
        ops[src_id] = Op("dead", [], name=src.name)
    return ops


def run_ops(ops: list[Op], output: int, x: Tensor) -> Tensor:
    """Evaluate the lowered operations on a plain tensor (what the bounds describe): (N, K) logits."""
    outs: list[Tensor | None] = [x]
    for op in ops[1:]:
        ins = [outs[a] for a in op.args]
        if op.kind == "dead":
            outs.append(None)
        elif op.kind == "affine":
            outs.append(op.fn(*ins))  # type: ignore[misc]
        elif op.kind == "relu":
            outs.append(ins[0].clamp_min(0))
        elif op.kind == "maxpool":
            outs.append(F.max_pool2d(ins[0], op.meta["kernel"], op.meta["stride"], op.meta["padding"]))
        else:
            g = ins[0].shape[1] // 2
            outs.append(torch.sqrt(ins[0][:, :g] ** 2 + ins[0][:, g:] ** 2 + CMOD_EPS))
    return outs[output]  # type: ignore[return-value]
