"""Bound a model's logit margins over a parameter box: forward linear bounds, then a CROWN backward pass.

The model is lowered (:mod:`.lowering`: by rule for plain instances of the supported
layers, by ``torch.fx`` tracing for everything else) to a short list of operations
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
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftattack.certify import linear_bounds as lb
from shiftattack.certify.linear_bounds import Bounds
from shiftattack.certify.lowering import CMOD_EPS, Op, UnsupportedLayer, lower, run_ops

__all__ = ["BoundModel", "UnsupportedLayer", "Op"]


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
        self.ops, self.output = lower(self.model, image_size)

    def logits(self, x: Tensor) -> Tensor:
        """What the lowered operations compute (and the bounds describe) on plain inputs: (N, K)."""
        with torch.no_grad():
            return run_ops(self.ops, self.output, x.to(torch.float64))

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
