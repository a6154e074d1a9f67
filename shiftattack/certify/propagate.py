"""Bound a model's logit margins over a parameter box: forward linear bounds, then a CROWN backward pass.

The model is traced with ``torch.fx`` and lowered to a short list of operations
(:class:`Op`): affine maps (convolutions, linear layers, batch norm in eval mode,
normalisation, pooling averages, BlurPool, padding, flatten, residual additions,
concatenation, channel selection) and three non-linear ones (ReLU, max-pool and
the CMod modulus ``sqrt(re^2 + im^2 + eps)``).

1. Forward: every operation's output gets linear bounds in the box parameters and
   a concrete interval (:mod:`.linear_bounds`); these give each non-linear
   operation's input interval, hence its linear relaxation.
2. Backward (CROWN): from the margin ``logit_y - logit_j`` the linear coefficients are
   pulled back to the input through the transposes of the affine maps (obtained as
   vector-Jacobian products, so every affine layer needs only its forward function)
   and through the relaxations (the lower line where a coefficient is positive, the
   upper where negative). At the input the bound is exact in the parameters.

The reported lower bound is the largest of the backward bound, the forward forms'
bound and interval arithmetic's, so it is never looser than interval arithmetic.

Supported: Conv2d (any padding mode), Linear, BatchNorm2d (eval), ReLU, MaxPool2d,
AvgPool2d, AdaptiveAvgPool2d, BlurPool2d, Flatten / flatten / view / reshape,
Identity, Dropout (eval), ``+`` of two activations, ``torch.cat``, constants added
or multiplied, the input normalisation of registered models and of
:class:`~shiftattack.models.loading.Normalize`, and the CMod stem. APS is refused:
its polyphase choice switches discontinuously with the input.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ..errors import ShiftAttackError
from ..models.aps import ApsPool2d, CircularMaxPool2d
from ..models.blurpool import BlurPool2d
from ..models.cmod import CModStem, ModulusBatchNorm2d
from ..models.loading import Normalize
from . import linear_bounds as lb
from .linear_bounds import Bounds

__all__ = ["BoundModel", "UnsupportedLayer", "Op"]

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


_LEAVES = (BlurPool2d, CModStem, ApsPool2d, CircularMaxPool2d, ModulusBatchNorm2d, Normalize)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


def _pair(v, what: str) -> int:
    if isinstance(v, tuple):
        if len(set(v)) != 1:
            raise UnsupportedLayer(f"{what}: non-square pooling parameters {v} are not supported")
        return int(v[0])
    return int(v)


class _Ref(int):
    """The id of an operation whose output is an activation (as opposed to a constant)."""


class _Builder:
    """Lowers modules and fx nodes to :class:`Op` lists."""

    def __init__(self) -> None:
        self.ops: list[Op] = [Op("input", [], name="input")]

    def emit(self, op: Op) -> int:
        self.ops.append(op)
        return _Ref(len(self.ops) - 1)

    # affine helpers ------------------------------------------------------
    def positive(self, arg: int, fn: Callable[[Tensor], Tensor], name: str) -> int:
        return self.emit(Op("affine", [arg], fn, lambda xs: lb.positive_linear(xs[0], fn), name=name))

    def channel_affine(self, arg: int, scale: Tensor, shift: Tensor, name: str) -> int:
        def fn(t: Tensor) -> Tensor:
            v = (1, -1) + (1,) * (t.dim() - 2)
            return t * scale.reshape(v) + shift.reshape(v)

        meta = {"scale": scale, "shift": shift}
        return self.emit(
            Op("affine", [arg], fn, lambda xs: lb.channel_affine(xs[0], scale, shift), meta=meta, name=name)
        )

    def conv(
        self,
        arg: int,
        weight: Tensor,
        bias: Tensor | None,
        run: Callable[[Tensor, Tensor], Tensor],
        name: str,
        geometry: tuple | None = None,
    ) -> int:
        """A convolution ``run(t, weight) + bias``; ``geometry`` (stride, padding, dilation, groups)
        when it zero-pads by fixed amounts, which gives the backward pass a direct transpose."""
        return self.emit(_conv_op(arg, weight, bias, run, name, geometry))

    def linear(self, arg: int, m: nn.Linear, name: str) -> int:
        w, b = m.weight, m.bias
        parts = (lambda t: t @ w.T, lambda t: t @ w.abs().T)
        return self.emit(
            Op(
                "affine",
                [arg],
                lambda t: F.linear(t, w, b),
                lambda xs: lb.signed_linear(xs[0], *parts, b),
                name=name,
            )
        )

    # modules -------------------------------------------------------------
    def module(self, m: nn.Module, arg: int, name: str) -> int:
        if isinstance(m, (ApsPool2d, CircularMaxPool2d)):
            raise UnsupportedLayer(
                f"layer {name} ({type(m).__name__}): adaptive polyphase sampling picks a polyphase component "
                "by its norm, a discontinuous choice; the bound method has no sound treatment of it. Certify "
                "APS models with --method exact or smooth"
            )
        if isinstance(m, nn.Sequential):
            for child_name, child in m.named_children():
                arg = self.module(child, arg, f"{name}.{child_name}")
            return arg
        if isinstance(m, nn.Conv2d):
            geometry = (
                (m.stride, m.padding, m.dilation, m.groups)
                if m.padding_mode == "zeros" and isinstance(m.padding, tuple)
                else None
            )
            return self.conv(arg, m.weight, m.bias, lambda t, w: m._conv_forward(t, w, None), name, geometry)
        if isinstance(m, nn.Linear):
            return self.linear(arg, m, name)
        if isinstance(m, ModulusBatchNorm2d):
            if m.training:
                raise UnsupportedLayer(f"{name} is in training mode; call model.eval()")
            ones = torch.ones_like(m.running_var)
            scale = (m.weight.abs() if m.affine else ones) / torch.sqrt(m.running_var + m.eps)
            return self.channel_affine(arg, scale, m.bias if m.affine else 0 * ones, name)
        if isinstance(m, nn.BatchNorm2d):
            if m.training or m.running_var is None:
                raise UnsupportedLayer(f"{name} is in training mode or has no running statistics")
            inv = 1.0 / torch.sqrt(m.running_var + m.eps)
            w = m.weight if m.affine else torch.ones_like(inv)
            b = m.bias if m.affine else torch.zeros_like(inv)
            return self.channel_affine(arg, w * inv, b - m.running_mean * w * inv, name)
        if isinstance(m, nn.ReLU):
            return self.emit(Op("relu", [arg], name=name))
        if isinstance(m, nn.MaxPool2d):
            if _pair(m.dilation, name) != 1 or m.ceil_mode:
                raise UnsupportedLayer(f"{name}: max-pool with dilation or ceil_mode is not supported")
            meta = {
                "kernel": _pair(m.kernel_size, name),
                "stride": _pair(m.stride, name),
                "padding": _pair(m.padding, name),
            }
            return self.emit(Op("maxpool", [arg], meta=meta, name=name))
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, BlurPool2d, nn.Flatten)):
            return self.positive(arg, m, name)
        if isinstance(m, (nn.Identity, nn.Dropout)):
            return arg
        if isinstance(m, Normalize):
            arg = self.channel_affine(arg, 1.0 / m.std.flatten(), -m.mean.flatten() / m.std.flatten(), name)
            return self.model(m.model, arg, name)
        if isinstance(m, CModStem):
            return self.cmod_stem(m, arg, name)
        if type(m).forward is not nn.Module.forward and not isinstance(m, _LEAVES):
            return self.model(m, arg, name)
        raise UnsupportedLayer(f"layer {name} ({type(m).__name__}) is not supported by the bound method")

    def cmod_stem(self, m: CModStem, arg: int, name: str) -> int:
        """Free channels as their own layers; Gabor channels: pad, complex conv, crop, modulus, norm, ReLU."""
        h, w = self._size
        out_h, out_w = m.geometry.output_size(h), m.geometry.output_size(w)
        pad, shift = m.layout(h, w)
        kernels = m.gabor(shift).detach()
        weight = torch.cat([kernels.real, kernels.imag], 0).to(torch.float64)
        stride = m.geometry.stride
        g = arg
        if any(pad):
            g = self.positive(g, lambda t: F.pad(t, pad), f"{name}.pad")
        g = self.conv(
            g,
            weight,
            None,
            lambda t, wt: F.conv2d(t, wt, None, stride),
            f"{name}.gabor",
            ((stride, stride), (0, 0), (1, 1), 1),
        )
        g = self.positive(g, lambda t: t[..., :out_h, :out_w], f"{name}.crop")
        g = self.emit(Op("modulus", [g], name=f"{name}.modulus"))
        if m.batch_norm:
            g = self.module(m.gabor_norm, g, f"{name}.gabor_norm")
        else:
            bias = m.gabor_bias.detach()
            g = self.channel_affine(g, torch.ones_like(bias), bias, f"{name}.gabor_bias")
        g = self.emit(Op("relu", [g], name=f"{name}.relu"))
        parts = [g] if m.free is None else [self.module(m.free, arg, f"{name}.free"), g]
        if len(parts) == 2:
            joined = self.emit(
                Op(
                    "affine",
                    parts,
                    lambda a, b: torch.cat([a, b], 1),
                    lambda xs: lb.cat(xs, 1),
                    name=f"{name}.cat",
                )
            )
        else:
            joined = g
        perm = m.perm
        return self.positive(joined, lambda t: t.index_select(1, perm), f"{name}.perm")

    def model(self, model: nn.Module, arg: int, name: str = "model") -> int:
        """Trace ``model`` and lower every node; returns the id of its output.

        A module normalising its input in our forward pre-hook (registered models, see
        :func:`~shiftattack.models.normalize.add_input_normalization`) gets that affine map first:
        tracing calls ``forward`` directly and would skip the hook.
        """
        mean, std = getattr(model, "input_mean", None), getattr(model, "input_std", None)
        if mean is not None and std is not None:
            arg = self.channel_affine(
                arg, 1.0 / std.flatten(), -mean.flatten() / std.flatten(), f"{name}.normalize"
            )
        try:
            graph = _Tracer().trace(model)
        except Exception as exc:  # fx raises many types on data-dependent control flow
            raise UnsupportedLayer(
                f"the bound method cannot trace {name} ({type(model).__name__}) with torch.fx "
                f"({type(exc).__name__}: {exc}); see docs/certify.md for the supported layers"
            ) from None
        modules = dict(model.named_modules())
        env: dict[str, object] = {}
        for node in graph.nodes:
            if node.op == "placeholder":
                env[node.name] = _Ref(arg)
            elif node.op == "output":
                out = node.args[0]
                if not isinstance(out, fx.Node):
                    raise UnsupportedLayer(f"{name} must return a single tensor")
                return int(env[out.name])  # type: ignore[arg-type]
            elif node.op == "get_attr":
                obj = model
                for part in node.target.split("."):
                    obj = getattr(obj, part)
                env[node.name] = obj.detach() if isinstance(obj, Tensor) else obj
            elif node.op == "call_module":
                env[node.name] = _Ref(
                    self.module(modules[node.target], int(env[node.args[0].name]), f"{name}.{node.target}")
                )
            else:
                env[node.name] = self.function(node, env, name)  # an activation (_Ref) or a constant
        raise UnsupportedLayer(f"{name} has no output")

    def function(self, node: fx.Node, env: dict, name: str):
        def val(a):
            if isinstance(a, fx.Node):
                return env[a.name]
            if isinstance(a, (list, tuple)):
                return type(a)(val(v) for v in a)
            return a

        args = [val(a) for a in node.args]
        kwargs = {k: val(v) for k, v in node.kwargs.items()}
        fn, where = node.target, f"{name}: {node.target}"
        ids = [isinstance(a, _Ref) for a in args]

        def has_ref(v) -> bool:
            if isinstance(v, (list, tuple)):
                return any(has_ref(t) for t in v)
            return isinstance(v, _Ref)

        if not has_ref(args) and not has_ref(list(kwargs.values())):  # constants only: evaluate now
            if node.op == "call_method":
                return getattr(args[0], fn)(*args[1:], **kwargs)
            return fn(*args, **kwargs)
        if fn is getattr and ids[0] and args[1] in ("dtype", "device"):
            return torch.float64 if args[1] == "dtype" else torch.device("cpu")
        if fn == "to" and ids[0]:
            return args[0]  # the propagation has its own dtype and device
        if fn in (operator.add, operator.iadd, torch.add, "add", "add_", "__iadd__") and len(args) == 2:
            if all(ids):
                return self.emit(
                    Op("affine", [args[0], args[1]], lambda a, b: a + b, lambda xs: lb.add(*xs), name=where)
                )
            return self._const(args, ids, 1.0, where)
        if fn in (operator.sub, torch.sub, "sub") and len(args) == 2 and not all(ids):
            return self._const(args, ids, -1.0, where)
        if fn in (operator.truediv, torch.div, "div") and ids[0] and not ids[1]:
            c = 1.0 / torch.as_tensor(args[1], dtype=torch.float64)
            return (
                self.positive(args[0], lambda t: t * c, where)
                if bool((c >= 0).all())
                else self._scale(args[0], c, where)
            )
        if fn in (operator.mul, torch.mul, "mul") and len(args) == 2 and sum(ids) == 1:
            x, c = (args[0], args[1]) if ids[0] else (args[1], args[0])
            return self._scale(x, torch.as_tensor(c, dtype=torch.float64), where)
        if fn in (torch.flatten, "flatten") and ids[0]:
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            if start != 1 or len(args) > 2 or kwargs.get("end_dim", -1) != -1:
                raise UnsupportedLayer(f"{where}: only flatten(x, 1) is supported")
            return self.positive(args[0], lambda t: t.flatten(1), where)
        if fn in (F.relu, torch.relu, "relu") and ids[0]:
            return self.emit(Op("relu", [args[0]], name=where))
        if fn in (torch.cat, "cat"):
            parts = [int(p) for p in args[0] if isinstance(p, _Ref)]
            dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
            if dim < 1 or len(parts) != len(args[0]):
                raise UnsupportedLayer(f"{where}: only concatenation of activations along dim >= 1")
            return self.emit(
                Op("affine", parts, lambda *ts: torch.cat(ts, dim), lambda xs: lb.cat(xs, dim), name=where)
            )
        if fn in ("view", "reshape") and ids[0]:
            shape = args[1:] if len(args) > 1 else [kwargs["shape"]]
            shape = (
                tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
            )
            return self.positive(args[0], lambda t: t.reshape(t.shape[0], *shape[1:]), where)
        if fn == "mean" and ids[0]:
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            keep = kwargs.get("keepdim", False)
            return self.positive(args[0], lambda t: t.mean(dim=dims, keepdim=keep), where)
        raise UnsupportedLayer(
            f"operation {getattr(fn, '__name__', fn)} in {name} is not supported by the bound method"
        )

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


def _conv_op(
    arg: int,
    weight: Tensor,
    bias: Tensor | None,
    run: Callable[[Tensor, Tensor], Tensor],
    name: str,
    geometry: tuple | None,
) -> Op:
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


def _fold_batch_norm(ops: list[Op], output: int) -> list[Op]:
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
        ops[k] = _conv_op(
            src.args[0], weight, bias, src.meta["run"], f"{src.name}+{op.name}", src.meta["geometry"]
        )
        ops[src_id] = Op("dead", [], name=src.name)
    return ops


def _check_hooks(model: nn.Module) -> None:
    """Refuse forward hooks other than our input normalisation: tracing would silently skip them."""
    from ..models.normalize import _normalize_input

    for name, m in model.named_modules():
        pre = [h for h in m._forward_pre_hooks.values() if h is not _normalize_input]
        if pre or m._forward_hooks:
            raise UnsupportedLayer(
                f"module {name or type(m).__name__} has forward hooks, which the bound method "
                "cannot see; remove them (input normalisation: use --mean/--std)"
            )


class BoundModel:
    """A model prepared for bound propagation: a float64 eval copy, lowered to :class:`Op` s.

    Args:
        model: maps (N, 3, H, W) in [0, 1] to logits.
        image_size: (H, W) of its inputs (the CMod stem's layout depends on it).

    :meth:`margin_lower` turns input :class:`Bounds` into lower bounds on every margin.
    """

    def __init__(self, model: nn.Module, image_size: tuple[int, int]) -> None:
        self.model = copy.deepcopy(model).double().eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        builder = _Builder()
        builder._size = image_size
        _check_hooks(self.model)
        self.output = builder.module(self.model, _Ref(0), "model")
        self.ops = _fold_batch_norm(builder.ops, self.output)

    def to(self, device: torch.device | str) -> BoundModel:
        self.model.to(device)
        return self

    def forward_bounds(self, x: Bounds) -> list[Bounds]:
        """Forward linear and interval bounds of every operation's output."""
        vals: list[Bounds] = [x]
        for op in self.ops[1:]:
            ins = [vals[a] for a in op.args]
            if op.kind == "dead":
                vals.append(None)  # type: ignore[arg-type]
            elif op.kind == "affine":
                vals.append(op.forward(ins))  # type: ignore[misc]
            elif op.kind == "relu":
                vals.append(lb.relu(ins[0]))
            elif op.kind == "maxpool":
                vals.append(lb.max_pool(ins[0], op.meta["kernel"], op.meta["stride"], op.meta["padding"]))
            else:
                vals.append(lb.modulus(ins[0], CMOD_EPS))
        return vals

    def margin_lower(self, x: Bounds, labels: Tensor) -> Tensor:
        """Lower bounds on ``logit_y - logit_j`` for every class j over the box (+inf at j = y): (B, K)."""
        # Sub-normal float64 values (below 2e-308) arise in the relaxations of neurons whose bounds
        # nearly touch and make x86 arithmetic about 50x slower; flushing them to zero moves no bound
        # by more than 1e-307.
        flushed = torch.set_flush_denormal(True)
        try:
            with torch.no_grad():
                return self._margin_lower(x, labels)
        finally:
            if flushed:
                torch.set_flush_denormal(False)

    def _margin_lower(self, x: Bounds, labels: Tensor) -> Tensor:
        vals = self.forward_bounds(x)
        out = vals[self.output]
        b, k = out.low.shape
        spec = F.one_hot(labels, k).to(out.low)[:, None, :] - torch.eye(
            k, dtype=out.low.dtype, device=out.low.device
        )
        # interval and forward-form bounds of spec @ logits
        c, r = (out.low + out.high) / 2, (out.high - out.low) / 2
        ibp = torch.einsum("bkd,bd->bk", spec, c) - torch.einsum("bkd,bd->bk", spec.abs(), r)
        form = torch.einsum("bkd,bqd->bqk", spec, out.form)
        ec, er = (out.e_lo + out.e_hi) / 2, (out.e_hi - out.e_lo) / 2
        err = torch.einsum("bkd,bd->bk", spec, ec) - torch.einsum("bkd,bd->bk", spec.abs(), er)
        fwd = lb.concretize(form, out.box_lo, out.box_hi, lower=True, product=out.product) + err
        lower = torch.maximum(ibp, fwd)
        # the backward pass costs about K backward passes: run it only for the pieces the forward
        # bounds leave undecided
        own = torch.arange(k, device=labels.device)[None] == labels[:, None]
        open_ = (lower <= 0) & ~own
        todo = open_.any(dim=1).nonzero().squeeze(1)
        if todo.numel():
            # only the classes still undecided, padded to the same count per piece
            counts = open_[todo].sum(dim=1)
            width = int(counts.max())
            cls = torch.argsort((~open_[todo]).to(torch.int8), dim=1, stable=True)[:, :width]  # (T, width)
            rows = spec[todo].gather(1, cls[..., None].expand(-1, -1, k))
            rows = rows * (torch.arange(width, device=rows.device)[None] < counts[:, None])[..., None]
            sub = [None if v is None else _take(v, todo) for v in vals]
            back = self._backward(sub, rows)  # (T, width)
            current = lower[todo]
            improved = torch.maximum(current.gather(1, cls), back)
            lower[todo] = current.scatter(1, cls, improved)
        return lower.scatter(1, labels[:, None], float("inf"))

    def _backward(self, vals: list[Bounds], spec: Tensor) -> Tensor:
        """CROWN: lower bound of ``spec @ output`` (B, K) by pulling linear coefficients back to the input."""
        lam: dict[int, Tensor] = {self.output: spec}
        const = torch.zeros(spec.shape[:2], dtype=spec.dtype, device=spec.device)
        for idx in range(len(self.ops) - 1, 0, -1):
            if idx not in lam:
                continue
            L = lam.pop(idx)
            op = self.ops[idx]
            ins = [vals[a] for a in op.args]
            if op.kind == "affine" and "transpose" in op.meta:
                b, k = L.shape[:2]
                shape = (b * k, *ins[0].low.shape[1:])
                g = op.meta["transpose"](L.reshape(b * k, *L.shape[2:]), shape).reshape(b, k, *shape[1:])
                bias = op.meta["bias"]
                if bias is not None:
                    const = const + torch.einsum("bkc...,c->bk", L, bias.to(L))
                a = op.args[0]
                lam[a] = lam[a] + g if a in lam else g
                continue
            if op.kind == "affine":
                grads, offset = _vjp(op.fn, [v.low for v in ins], L)  # type: ignore[arg-type]
                const = const + torch.einsum("bk...,b...->bk", L, offset)
                for a, g in zip(op.args, grads, strict=True):
                    lam[a] = lam[a] + g if a in lam else g
                continue
            x = ins[0]
            negative = L < 0
            if op.kind == "relu":
                alpha, s, t = lb.relu_relaxation(x.low, x.high)
                # lower line (slope alpha) where the coefficient is positive, upper (s z + t) where negative
                g = L * torch.where(negative, s.unsqueeze(1), alpha.unsqueeze(1))
                const = const + torch.einsum("bk...,b...->bk", L.clamp_max(0), t)
            elif op.kind == "maxpool":
                index, dominated, best_l, _, others_h, own_h = lb.max_pool_selection(
                    x.low, x.high, op.meta["kernel"], op.meta["stride"], op.meta["padding"]
                )
                # positive coefficients: max >= z_j (the chosen element); negative ones need an upper
                # line: z_j itself where j dominates its window, else the chord of max(z_j, others' max)
                s_up, t_up = lb.max_pool_upper_line(best_l, others_h, own_h)
                cut = negative & ~dominated.unsqueeze(1)
                routed = torch.where(cut, L * s_up.unsqueeze(1), L)
                const = const + torch.einsum("bk...,b...->bk", L.masked_fill(~cut, 0), t_up)
                bq, kq, c = routed.shape[:3]
                g = torch.zeros(bq, kq, c, x.low.shape[-2] * x.low.shape[-1], dtype=L.dtype, device=L.device)
                g.scatter_add_(3, index.flatten(2).unsqueeze(1).expand(bq, kq, c, -1), routed.flatten(3))
                g = g.reshape(bq, kq, *x.low.shape[1:])
            else:  # modulus
                gch = x.low.shape[1] // 2
                ar, ai, cl, cu = lb.modulus_planes(
                    x.low[:, :gch], x.high[:, :gch], x.low[:, gch:], x.high[:, gch:], CMOD_EPS
                )
                g = torch.cat([L * ar.unsqueeze(1), L * ai.unsqueeze(1)], dim=2)
                const = (
                    const
                    + torch.einsum("bk...,b...->bk", L.clamp_min(0), cl)
                    + torch.einsum("bk...,b...->bk", L.clamp_max(0), cu)
                )
            a = op.args[0]
            lam[a] = lam[a] + g if a in lam else g
        L = lam.get(0)
        if L is None:
            return const
        x = vals[0]
        # the input is its form plus an error interval: sum_s L[s] * x[s] is affine in the parameters
        form = torch.einsum("bk...,bq...->bqk", L, x.form)
        ec, er = (x.e_lo + x.e_hi) / 2, (x.e_hi - x.e_lo) / 2
        err = torch.einsum("bk...,b...->bk", L, ec) - torch.einsum("bk...,b...->bk", L.abs(), er)
        return lb.concretize(form, x.box_lo, x.box_hi, lower=True, product=x.product) + err + const


def _take(x: Bounds, index: Tensor) -> Bounds:
    """The bounds of the batch elements ``index``."""
    return Bounds(
        x.form[index],
        x.e_lo[index],
        x.e_hi[index],
        x.low[index],
        x.high[index],
        x.box_lo[index],
        x.box_hi[index],
        x.product,
    )


def _vjp(fn: Callable[..., Tensor], examples: list[Tensor], L: Tensor) -> tuple[list[Tensor], Tensor]:
    """Transpose of an affine map applied to coefficients L (B, K, *S_out), and the map's offset.

    Returns ``([A_i^T L per argument], fn(0) (B, *S_out))``: the gradient of ``sum(L * fn(z))``
    with respect to each argument, taken at zero inputs (the map is affine, so the
    point does not matter), computed for all K rows at once.
    """
    b, k = L.shape[:2]
    with torch.enable_grad():
        zs = [
            torch.zeros((b * k, *e.shape[1:]), dtype=e.dtype, device=e.device, requires_grad=True)
            for e in examples
        ]
        out = fn(*zs)
        grads = torch.autograd.grad(out, zs, L.reshape(b * k, *L.shape[2:]), allow_unused=True)
    offset = out.detach().reshape(b, k, *out.shape[1:])[:, 0]
    shaped = [
        torch.zeros_like(z).reshape(b, k, *z.shape[1:]) if g is None else g.reshape(b, k, *g.shape[1:])
        for z, g in zip(zs, grads, strict=True)
    ]
    return shaped, offset
