"""Lowering of ``torch.fx`` function and method nodes: arithmetic, reshapes and the functional layers."""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx
from torch.nn.modules.utils import _pair as _as_pair

from shiftattack.certify import linear_bounds as lb
from shiftattack.certify.ops import Emitter, Op, UnsupportedLayer, _deep, _Meta, _Ref

__all__ = ["FunctionRules"]

_ADD = (operator.add, operator.iadd, torch.add, "add", "add_", "__iadd__")
_IDENTITY_METHODS = ("contiguous", "float", "double", "clone")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class FunctionRules(Emitter):
    """Lowers one ``call_function`` / ``call_method`` node at a time (see :mod:`.lowering`)."""

    def function(self, node: fx.Node, env: dict, name: str):
        """Lower one ``call_function`` / ``call_method`` node (see the module docstring)."""

        def val(a):
            if isinstance(a, fx.Node):
                return env[a.name]
            if isinstance(a, (list, tuple)):
                return type(a)(val(v) for v in a)
            return a

        args = [val(a) for a in node.args]
        kwargs = {k: val(v) for k, v in node.kwargs.items()}
        fn, where = node.target, f"{name}: {getattr(node.target, '__name__', node.target)}"
        if getattr(fn, "__name__", None) == "_assert":  # torch._assert: no effect on a returned output
            return None
        refs = _deep(args, _Ref) or _deep(kwargs, _Ref)
        if _deep(args, _Meta) or _deep(kwargs, _Meta):
            if not refs:
                return _Meta()  # arithmetic on shapes; may only feed assertions and the batch dimension
            if not (fn in ("view", "reshape") and not _deep(args[2:], _Meta) and not kwargs):
                raise UnsupportedLayer(f"{where}: an activation's shape is used in the computation")
        if not refs:  # constants only: evaluate now
            if node.op == "call_method":
                return getattr(args[0], fn)(*args[1:], **kwargs)
            return fn(*args, **kwargs)
        ids = [isinstance(a, _Ref) for a in args]
        first = ids[0] if ids else False
        if fn is getattr and first:
            if args[1] == "dtype":
                return torch.float64
            if args[1] == "device":
                return torch.device("cpu")
            if args[1] in ("shape", "ndim"):
                return _Meta()
        if fn in ("size", "dim") and first:
            return _Meta()
        if fn == "to" and first:
            dtype = kwargs.get("dtype", next((a for a in args[1:] if isinstance(a, torch.dtype)), None))
            if dtype in _LOW_PRECISION or (dtype is not None and not dtype.is_floating_point):
                raise UnsupportedLayer(f"{where}: casts an activation to {dtype}, which the bounds do not "
                                       "model")
            return args[0]  # the propagation has its own dtype and device
        if fn in _IDENTITY_METHODS and first and len(args) == 1:
            return args[0]
        lowered = self._affine_function(fn, args, kwargs, ids, where)
        if lowered is not None:
            return lowered
        return self._layer_function(fn, args, kwargs, where, name)

    def _affine_function(self, fn, args, kwargs, ids, where):
        """Sums, constant offsets and scales, reshapes, flatten, cat, mean; None when not one of them."""
        if kwargs.get("out") is not None or kwargs.get("alpha", 1) != 1:
            raise UnsupportedLayer(f"{where}: out= and alpha= are not supported")
        if fn in _ADD and len(args) == 2:
            if all(ids):
                return self.emit(
                    Op("affine", [args[0], args[1]], lambda a, b: a + b, lambda xs: lb.add(*xs), name=where)
                )
            return self._const(args, ids, 1.0, where)
        if fn in (operator.sub, torch.sub, "sub") and len(args) == 2 and not all(ids):
            return self._const(args, ids, -1.0, where)
        if fn in (operator.truediv, torch.div, "div") and ids[0] and len(args) == 2 and not ids[1]:
            if kwargs.get("rounding_mode") is not None:
                raise UnsupportedLayer(f"{where}: rounding division is not supported")
            c = 1.0 / torch.as_tensor(args[1], dtype=torch.float64)
            return self.positive(args[0], lambda t: t * c, where) if bool((c >= 0).all()) else self._scale(
                args[0], c, where)
        if fn in (operator.mul, torch.mul, "mul") and len(args) == 2 and sum(ids) == 1:
            x, c = (args[0], args[1]) if ids[0] else (args[1], args[0])
            return self._scale(x, torch.as_tensor(c, dtype=torch.float64), where)
        if fn in (operator.neg, torch.neg, "neg") and ids[0] and len(args) == 1:
            return self._scale(args[0], torch.tensor(-1.0, dtype=torch.float64), where)
        if fn in (torch.flatten, "flatten") and ids[0]:
            start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
            if start != 1 or len(args) > 2 or kwargs.get("end_dim", -1) != -1:
                raise UnsupportedLayer(f"{where}: only flatten(x, 1) is supported")
            return self.positive(args[0], lambda t: t.flatten(1), where)
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
            nested = len(shape) == 1 and isinstance(shape[0], (tuple, list))
            shape = tuple(shape[0]) if nested else tuple(shape)
            if _deep(shape[1:], _Meta):
                raise UnsupportedLayer(f"{where}: an activation's shape is used in the computation")
            return self.positive(args[0], lambda t: t.reshape(t.shape[0], *shape[1:]), where)
        if fn in ("mean", torch.mean) and ids[0]:
            dims = args[1] if len(args) > 1 else kwargs.get("dim")
            keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
            listed = [dims] if isinstance(dims, int) else list(dims or [])
            if not listed or any(d == 0 for d in listed):  # negative ones: the batch check catches them
                raise UnsupportedLayer(f"{where}: a mean over the batch dimension mixes the images")
            return self.positive(args[0], lambda t: t.mean(dim=dims, keepdim=keep), where)
        return None

    def _layer_function(self, fn, args, kwargs, where: str, name: str) -> int:
        """The functional layers: F.relu, F.conv2d, F.linear, F.batch_norm (eval), F.pad."""
        def arg(i: int, key: str, default=None):
            return args[i] if len(args) > i else kwargs.get(key, default)

        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, _Ref) or _deep([args[1:], kwargs], _Ref):
            raise UnsupportedLayer(
                f"operation {where} combines activations in a way the bound method does not support")
        if fn in (F.relu, torch.relu, "relu"):
            return self.emit(Op("relu", [x], name=where))
        if fn is F.conv2d:
            weight, bias = arg(1, "weight"), arg(2, "bias")
            stride, padding = _as_pair(arg(3, "stride", 1)), arg(4, "padding", 0)
            dilation, groups = _as_pair(arg(5, "dilation", 1)), arg(6, "groups", 1)
            padding = padding if isinstance(padding, str) else _as_pair(padding)

            def run(t, w):
                return F.conv2d(t, w, None, stride, padding, dilation, groups)

            geometry = None if isinstance(padding, str) else (stride, padding, dilation, groups)
            return self.conv(x, weight, bias, run, where, geometry)
        if fn is F.linear:
            return self.linear(x, arg(1, "weight"), arg(2, "bias"), where)
        if fn is F.batch_norm:
            if arg(5, "training", False):
                raise UnsupportedLayer(f"{where}: batch norm in training mode uses each batch's statistics; "
                                       "call model.eval()")
            return self.batch_norm(x, arg(1, "running_mean"), arg(2, "running_var"), arg(3, "weight"),
                                   arg(4, "bias"), arg(7, "eps", 1e-5), where)
        if fn is F.pad:
            pad, mode, value = arg(1, "pad"), arg(2, "mode", "constant"), arg(3, "value", None)
            if mode == "constant" and value not in (None, 0, 0.0):
                raise UnsupportedLayer(f"{where}: constant padding with a value other than 0")
            return self.positive(x, lambda t: F.pad(t, pad, mode), where)
        raise UnsupportedLayer(
            f"operation {getattr(fn, '__name__', fn)} in {name} is not supported by the bound method")
