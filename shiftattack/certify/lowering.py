"""Lower a model to the short list of operations the bound method knows (:class:`Op`).

The bound must describe the model that *runs*, so a module is lowered by its type
only when its class computes exactly what that type's rule assumes: the class's
``forward`` (and ``__call__``, and for convolutions ``_conv_forward``) must be the
base class's own (:func:`plain_instance`). A subclass that overrides ``forward``
(a ``Sequential`` with a residual ``x + super().forward(x)``, a ``BatchNorm2d``
applying an activation, a ``Linear`` head that post-processes its logits) is traced
with ``torch.fx`` like any custom module, and its operations lowered one by one;
what cannot be traced or has no sound rule raises :class:`UnsupportedLayer` naming
the layer and why. Forward hooks, instance-level ``forward`` replacements and
overridden ``__call__`` are refused (tracing would not see them).

Lowering is checked after the fact as well: :mod:`.lowering_check` compares the
lowered operations with the real model on the images to certify.

Operations: affine maps (convolutions, linear layers, batch norm in eval mode,
normalisation, pooling averages, BlurPool, padding, flatten, residual additions,
concatenation, channel selection) and three non-linear ones (``relu``, ``maxpool``
and the CMod ``modulus``). The functional forms ``F.conv2d``, ``F.linear``,
``F.batch_norm`` (eval), ``F.pad``, ``F.relu`` and ``torch.flatten`` are lowered too,
so a traced subclass that calls ``super().forward`` is followed into its base.
APS is refused: its polyphase choice switches discontinuously with the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from shiftattack.certify import linear_bounds as lb
from shiftattack.certify.lower_functions import FunctionRules
from shiftattack.certify.ops import CMOD_EPS, Op, UnsupportedLayer, _Ref, fold_batch_norm, run_ops
from shiftattack.models.aps import ApsConv2d, ApsPool2d, CircularMaxPool2d
from shiftattack.models.blurpool import BlurPool2d
from shiftattack.models.cmod import CModStem, ModulusBatchNorm2d
from shiftattack.models.loading import Normalize
from shiftattack.models.normalize import _normalize_input

__all__ = ["Op", "UnsupportedLayer", "CMOD_EPS", "lower", "plain_instance", "run_ops"]


#: the types lowered by rule, each only for instances whose class keeps the base's forward
_RULE_TYPES = (
    nn.Sequential, nn.Conv2d, nn.Linear, ModulusBatchNorm2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d,
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, BlurPool2d, nn.Flatten, nn.Identity, nn.Dropout, Normalize, CModStem,
)
_APS = (ApsPool2d, CircularMaxPool2d, ApsConv2d)


def plain_instance(m: nn.Module, base: type) -> bool:
    """True when ``m`` is a ``base`` whose class computes what ``base`` computes.

    ``isinstance`` alone is not enough: a subclass may override ``forward`` (or
    ``__call__``, or a convolution's ``_conv_forward``) and compute something else.
    """
    if not isinstance(m, base):
        return False
    cls = type(m)
    same = cls.forward is base.forward and cls.__call__ is nn.Module.__call__
    if issubclass(base, nn.Conv2d):
        same = same and cls._conv_forward is nn.Conv2d._conv_forward
    return same


def _rule_type(m: nn.Module) -> type | None:
    """The rule type ``m`` is a plain instance of (the most specific one), or None."""
    for base in _RULE_TYPES:
        if plain_instance(m, base):
            return base
    return None


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _APS) or _rule_type(m) is not None:
            return True
        return super().is_leaf_module(m, qualname) and type(m).forward is not nn.Module.forward


def _pair(v, what: str) -> int:
    if isinstance(v, tuple):
        if len(set(v)) != 1:
            raise UnsupportedLayer(f"{what}: non-square pooling parameters {v} are not supported")
        return int(v[0])
    return int(v)


class _Builder(FunctionRules):
    """Lowers modules (by rule or by tracing) to :class:`Op` lists."""

    def __init__(self, image_size: tuple[int, int]) -> None:
        super().__init__()
        self._size = image_size

    # modules -------------------------------------------------------------
    def module(self, m: nn.Module, arg: int, name: str) -> int:
        """Lower ``m`` applied to activation ``arg``: by rule when it is a plain instance of a rule
        type, by tracing its ``forward`` otherwise."""
        if _normalize_input in m._forward_pre_hooks.values():  # registered models' input normalisation
            arg = self.channel_affine(
                arg, 1.0 / m.input_std.flatten(), -m.input_mean.flatten() / m.input_std.flatten(),
                f"{name}.normalize",
            )
        if isinstance(m, _APS):
            raise UnsupportedLayer(
                f"layer {name} ({type(m).__name__}): adaptive polyphase sampling picks a polyphase component "
                "by its norm, a discontinuous choice; the bound method has no sound treatment of it. Certify "
                "APS models with --method exact or smooth"
            )
        base = _rule_type(m)
        if base is None:
            if type(m).forward is nn.Module.forward:
                raise UnsupportedLayer(f"layer {name} ({type(m).__name__}) has no forward")
            return self.traced(m, arg, name)
        return self._by_rule(m, base, arg, name)

    def _by_rule(self, m: nn.Module, base: type, arg: int, name: str) -> int:
        if base is nn.Sequential:
            for child_name, child in m.named_children():
                arg = self.module(child, arg, f"{name}.{child_name}")
            return arg
        if base is nn.Conv2d:
            geometry = (
                (m.stride, m.padding, m.dilation, m.groups)
                if m.padding_mode == "zeros" and isinstance(m.padding, tuple)
                else None
            )
            return self.conv(arg, m.weight, m.bias, lambda t, w: m._conv_forward(t, w, None), name, geometry)
        if base is nn.Linear:
            return self.linear(arg, m.weight, m.bias, name)
        if base is ModulusBatchNorm2d:
            if m.training:
                raise UnsupportedLayer(f"{name} is in training mode; call model.eval()")
            ones = torch.ones_like(m.running_var)
            scale = (m.weight.abs() if m.affine else ones) / torch.sqrt(m.running_var + m.eps)
            return self.channel_affine(arg, scale, m.bias if m.affine else 0 * ones, name)
        if base is nn.BatchNorm2d:
            if m.training or m.running_var is None:
                raise UnsupportedLayer(f"{name} is in training mode or has no running statistics")
            return self.batch_norm(arg, m.running_mean, m.running_var, m.weight if m.affine else None,
                                   m.bias if m.affine else None, m.eps, name)
        if base is nn.ReLU:
            return self.emit(Op("relu", [arg], name=name))
        if base is nn.MaxPool2d:
            if _pair(m.dilation, name) != 1 or m.ceil_mode or m.return_indices:
                raise UnsupportedLayer(f"{name}: max-pool with dilation, ceil_mode or indices is not "
                                       "supported")
            meta = {"kernel": _pair(m.kernel_size, name), "stride": _pair(m.stride, name),
                    "padding": _pair(m.padding, name)}
            return self.emit(Op("maxpool", [arg], meta=meta, name=name))
        if base is nn.Flatten and (m.start_dim != 1 or m.end_dim != -1):
            raise UnsupportedLayer(f"{name}: only Flatten(1, -1) is supported (it must keep the batch)")
        if base in (nn.AvgPool2d, nn.AdaptiveAvgPool2d, BlurPool2d, nn.Flatten):
            return self.positive(arg, m, name)
        if base in (nn.Identity, nn.Dropout):
            return arg
        if base is Normalize:
            arg = self.channel_affine(arg, 1.0 / m.std.flatten(), -m.mean.flatten() / m.std.flatten(), name)
            return self.module(m.model, arg, f"{name}.model")
        return self.cmod_stem(m, arg, name)

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
        g = self.conv(g, weight, None, lambda t, wt: F.conv2d(t, wt, None, stride), f"{name}.gabor",
                      ((stride, stride), (0, 0), (1, 1), 1))
        g = self.positive(g, lambda t: t[..., :out_h, :out_w], f"{name}.crop")
        g = self.emit(Op("modulus", [g], name=f"{name}.modulus"))
        if m.batch_norm:
            g = self.module(m.gabor_norm, g, f"{name}.gabor_norm")
        else:
            bias = m.gabor_bias.detach()
            g = self.channel_affine(g, torch.ones_like(bias), bias, f"{name}.gabor_bias")
        g = self.emit(Op("relu", [g], name=f"{name}.relu"))
        if m.free is not None:
            free = self.module(m.free, arg, f"{name}.free")
            g = self.emit(Op("affine", [free, g], lambda a, b: torch.cat([a, b], 1), lambda xs: lb.cat(xs, 1),
                             name=f"{name}.cat"))
        perm = m.perm
        return self.positive(g, lambda t: t.index_select(1, perm), f"{name}.perm")

    def traced(self, model: nn.Module, arg: int, name: str) -> int:
        """Trace ``model.forward`` and lower every node; returns the id of its output."""
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
                if env:
                    raise UnsupportedLayer(f"{name} ({type(model).__name__}) takes more than one input")
                env[node.name] = _Ref(arg)
            elif node.op == "output":
                out = env.get(node.args[0].name) if isinstance(node.args[0], fx.Node) else None
                if not isinstance(out, _Ref):
                    raise UnsupportedLayer(f"{name} ({type(model).__name__}) must return a single tensor")
                return int(out)
            elif node.op == "get_attr":
                obj = model
                for part in node.target.split("."):
                    obj = getattr(obj, part)
                env[node.name] = obj.detach() if isinstance(obj, Tensor) else obj
            elif node.op == "call_module":
                where = f"{name}.{node.target}"
                x = env[node.args[0].name] if node.args and isinstance(node.args[0], fx.Node) else None
                if len(node.args) != 1 or node.kwargs or not isinstance(x, _Ref):
                    raise UnsupportedLayer(f"{where} is called with other than one activation")
                env[node.name] = _Ref(self.module(modules[node.target], int(x), where))
            else:
                env[node.name] = self.function(node, env, name)  # an activation (_Ref) or a constant
        raise UnsupportedLayer(f"{name} has no output")


def _check_calls(model: nn.Module) -> None:
    """Refuse what tracing cannot see: hooks (other than our input normalisation), a ``forward``
    replaced on an instance, an overridden ``__call__``."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        raise UnsupportedLayer("global forward hooks are registered, which the bound method cannot see")
    for name, m in model.named_modules():
        where = name or type(m).__name__
        pre = [h for h in m._forward_pre_hooks.values() if h is not _normalize_input]
        if pre or m._forward_hooks:
            raise UnsupportedLayer(
                f"module {where} has forward hooks, which the bound method cannot see; remove them "
                "(input normalisation: use --mean/--std)"
            )
        if "forward" in vars(m):
            raise UnsupportedLayer(f"module {where} has its forward replaced on the instance; tracing "
                                   "would follow its class's forward instead")
        if type(m).__call__ is not nn.Module.__call__:
            raise UnsupportedLayer(f"module {where} ({type(m).__name__}) overrides __call__")


def lower(model: nn.Module, image_size: tuple[int, int]) -> tuple[list[Op], int]:
    """Lower ``model`` (float64, eval) applied to (N, 3, H, W) inputs; returns (ops, id of the logits)."""
    _check_calls(model)
    builder = _Builder(image_size)
    output = builder.module(model, _Ref(0), "model")
    return fold_batch_norm(builder.ops, output), output
