"""Complex Gabor kernels for CMod: synthesis, a learnable bank, least-squares fitting, quadrature.

A Gabor channel is the complex kernel ``z_c * psi(u, v)`` on input colour ``c``:

    psi = g * (exp(i * freq * u) - kappa) / norm,
    g = exp(-u**2 / (2 * sigma_u**2) - v**2 / (2 * sigma_v**2)),
    u = (x - cx) cos(theta) + (y - cy) sin(theta),  v = -(x - cx) sin(theta) + (y - cy) cos(theta),

with ``x, y`` pixel offsets from the kernel centre ``((kw - 1) / 2, (kh - 1) / 2)``,
``freq`` the carrier's angular frequency (radians per px, in ``(0, pi]``), ``theta`` its
direction (radians, 0 = along the width axis), ``sigma`` the envelope's standard
deviations along and across the carrier (px), ``(cy, cx)`` the envelope centre (px),
``kappa = sum(g exp(i freq u)) / sum(g)`` (so both the real and imaginary parts sum
to exactly 0: band-pass, as Morlet's correction) and ``norm`` making ``||psi||_2 = 1``.
The colour mix ``z`` is complex, 3 numbers of amplitude and phase: a real luminance
mix (the paper's) is the special case of equal phases, and the phase absorbs the
carrier phase, so the real part ``Re(z_c psi)`` can match any trained kernel's phase.

Why this family and not the paper's DT-CWPT. Leterme et al. build Gabor channels
as a luminance mix, a dual-tree complex wavelet packet transform (Q-shift filters)
and a filter selection. CMod needs three properties from a kernel: band-pass (zero
DC), oriented, and analytic (real and imaginary parts in quadrature, so that the
modulus is a smooth envelope, nearly shift invariant, and the real part's max-pool
is close to it). The parametric family has all three by construction, with
frequency and orientation continuous rather than on the DT-CWPT's dyadic grid,
which is what fitting a trained kernel (:func:`fit_gabor`, for :func:`twin`) needs.
Evidence, checked in ``tests/test_cmod.py``:

* band-pass: every kernel sums to 0 (to float precision), real and imaginary parts;
* quadrature (:func:`negative_frequency_leakage`, the share of a kernel's spectral
  energy in the half-plane opposite its carrier; 0 for an analytic filter, 0.5
  for a real one): 0.022, 0.004 and 0.0005 for ``sigma * freq`` = 1.5, 2 and 2.5
  (untruncated envelope, freq = 1); :func:`fit_gabor` keeps ``sigma_u * freq >=
  1.5`` (``MIN_SIGMA_FREQ``). Truncation to the kernel grid and carriers near
  Nyquist raise it: fits of random 7x7 (11x11) Gabors have leakage 0.03 (0.006)
  on average, 0.10 (0.03) at most; at freq = 3 rad/px the spectrum wraps round
  (0.33): such checkerboard kernels are poor CMod kernels (the paper drops its
  DT-CWPT's "edge" filters for the same reason), and :func:`~.cmod_models.twin`
  ranks kernels by residual plus leakage;
* fitting: real parts of Gabors of random frequency, orientation, envelope,
  phase and colour mix, plus 5 % noise, are recovered with relative residual
  about 0.05 (the noise level) on 7x7 and 11x11 grids; low-pass, random and
  centre-surround kernels leave residuals above 0.5, so the fit residual also
  ranks which kernels are Gabor-like;
* shift stability: on real CIFAR-10 test images, under 1 px shifts, the
  per-channel mean of the CMod output of twin channels fitted to Gabor kernels
  changes 2.5-3x less than that of the same kernels' RMax (relative change,
  RMax -> CMod: ResNet stem on 64 px upsampled images 0.055 -> 0.018, AlexNet stem
  on 128 px 0.127 -> 0.051, a 5x5 CIFAR stem on 32 px 0.094 -> 0.033).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from shiftattack.errors import ShapeError, SpecError, check_shape

__all__ = [
    "MIN_SIGMA_FREQ",
    "gabor_kernels",
    "GaborBank",
    "GaborFit",
    "fit_gabor",
    "negative_frequency_leakage",
]

MIN_SIGMA_FREQ = 1.5
_FREQ_RANGE = (0.1, math.pi)


def gabor_kernels(freq: Tensor, theta: Tensor, sigma: Tensor, centre: Tensor,
                  size: tuple[int, int]) -> Tensor:
    """Unit-norm, zero-mean complex Gabor kernels (see the module docstring).

    Args:
        freq: (G,) carrier angular frequency, radians per px.
        theta: (G,) carrier direction, radians (0 = along the width axis).
        sigma: (G, 2) envelope standard deviations along and across the carrier, px.
        centre: (G, 2) envelope centre ``(cy, cx)``, px from the kernel centre.
        size: ``(kh, kw)``.

    Returns:
        complex (G, kh, kw) tensor of the parameters' real dtype's complex type.

    Examples:
        >>> k = gabor_kernels(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([[2.0, 2.0]]),
        ...                   torch.zeros(1, 2), (7, 7))
        >>> k.shape, bool(k.sum().abs() < 1e-5), round(float(k.abs().pow(2).sum()), 4)
        (torch.Size([1, 7, 7]), True, 1.0)
    """
    kh, kw = size
    dt, dev = freq.dtype, freq.device
    ys = torch.arange(kh, dtype=dt, device=dev) - (kh - 1) / 2
    xs = torch.arange(kw, dtype=dt, device=dev) - (kw - 1) / 2
    y = ys.view(1, kh, 1) - centre[:, 0].view(-1, 1, 1)
    x = xs.view(1, 1, kw) - centre[:, 1].view(-1, 1, 1)
    c, s = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    u, v = x * c + y * s, -x * s + y * c
    su, sv = sigma[:, 0].view(-1, 1, 1), sigma[:, 1].view(-1, 1, 1)
    g = torch.exp(-0.5 * (u / su) ** 2 - 0.5 * (v / sv) ** 2)
    phase = freq.view(-1, 1, 1) * u
    re, im = g * torch.cos(phase), g * torch.sin(phase)
    total = g.sum(dim=(1, 2), keepdim=True)
    re = re - g * re.sum(dim=(1, 2), keepdim=True) / total
    im = im - g * im.sum(dim=(1, 2), keepdim=True) / total
    norm = torch.sqrt((re**2 + im**2).sum(dim=(1, 2), keepdim=True)).clamp_min(1e-12)
    return torch.complex(re / norm, im / norm)


def _default_geometry(n: int, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """A spread of 2 scales x n/2 orientations, constant relative bandwidth (sigma * freq = 2.5)."""
    scales = torch.tensor([math.pi / 2, math.pi / 4]).repeat_interleave((n + 1) // 2)[:n]
    per = (n + 1) // 2
    theta = (torch.arange(n) % per).float() * math.pi / per
    sigma = (2.5 / scales).clamp(max=size / 2.5)
    return scales, theta, torch.stack([sigma, sigma], 1)


class GaborBank(nn.Module):
    """``channels`` complex Gabor kernels on ``in_channels`` inputs, with complex colour mixes.

    Args:
        channels: number of Gabor channels ``G``.
        in_channels: input colours ``C``.
        kernel_size: kernel side ``k`` (px).
        learn_geometry: learn frequency, orientation, envelope and centre (else
            buffers, fixed at their initial or fitted values); the colour mix is
            always learnt.

    Parameters (or buffers): ``freq`` (G,) rad/px, ``theta`` (G,) rad, ``log_sigma``
    (G, 2) log px, ``centre`` (G, 2) px, ``mix`` (G, C, 2) real and imaginary parts.

    Shape:
        ``forward(shift)`` returns complex (G, C, k, k) kernels ``mix[g, c] * psi_g``, the
        envelopes moved by ``shift = (dy, dx)`` px (sub-pixel alignment, see
        :class:`~shiftattack.models.cmod.CModStem`).
    """

    def __init__(self, channels: int, in_channels: int = 3, kernel_size: int = 7, *,
                 learn_geometry: bool = True) -> None:
        super().__init__()
        if channels < 1 or in_channels < 1 or kernel_size < 2:
            raise SpecError(f"GaborBank needs channels >= 1, in_channels >= 1, kernel_size >= 2; "
                            f"got {channels}, {in_channels}, {kernel_size}")
        self.channels, self.in_channels, self.kernel_size = channels, in_channels, kernel_size
        self.learn_geometry = learn_geometry
        freq, theta, sigma = _default_geometry(channels, kernel_size)
        geometry = {"freq": freq, "theta": theta, "log_sigma": sigma.log(),
                    "centre": torch.zeros(channels, 2)}
        for name, value in geometry.items():
            if learn_geometry:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        lum = torch.tensor([0.299, 0.587, 0.114]) * 1.7 if in_channels == 3 else torch.ones(in_channels)
        mix = torch.zeros(channels, in_channels, 2)
        mix[..., 0] = lum / math.sqrt(in_channels)
        self.mix = nn.Parameter(mix)

    def sigma(self) -> Tensor:
        return self.log_sigma.exp()

    def psi(self, shift: tuple[float, float] = (0.0, 0.0)) -> Tensor:
        """The unit-norm complex spatial kernels, (G, k, k), envelopes moved by ``shift`` px."""
        freq = self.freq.clamp(*_FREQ_RANGE)
        centre = self.centre + torch.tensor(shift, dtype=self.centre.dtype, device=self.centre.device)
        return gabor_kernels(freq, self.theta, self.sigma(), centre, (self.kernel_size, self.kernel_size))

    def forward(self, shift: tuple[float, float] = (0.0, 0.0)) -> Tensor:
        mix = torch.complex(self.mix[..., 0], self.mix[..., 1])
        return mix[:, :, None, None] * self.psi(shift)[:, None]

    @torch.no_grad()
    def load_fit(self, fit: GaborFit, index: Tensor | list[int] | None = None) -> None:
        """Copy fitted parameters (rows ``index`` of ``fit``, all by default) into the bank."""
        idx = torch.arange(fit.freq.shape[0]) if index is None else torch.as_tensor(index)
        if idx.numel() != self.channels or fit.mix.shape[1] != self.in_channels:
            raise ShapeError(f"fit has {idx.numel()} channels of {fit.mix.shape[1]} colours, "
                             f"the bank expects {self.channels} of {self.in_channels}")
        for name, value in (("freq", fit.freq), ("theta", fit.theta), ("log_sigma", fit.sigma.log()),
                            ("centre", fit.centre), ("mix", torch.view_as_real(fit.mix))):
            target = getattr(self, name)
            target.copy_(value[idx].to(target.dtype))

    def extra_repr(self) -> str:
        return (f"{self.channels}, in_channels={self.in_channels}, kernel_size={self.kernel_size}, "
                f"learn_geometry={self.learn_geometry}")


@dataclass
class GaborFit:
    """Least-squares Gabor fits of K real kernels (all tensors float64, on the CPU).

    Attributes:
        freq, theta: (K,) rad/px and rad.
        sigma, centre: (K, 2) px (along/across the carrier; (cy, cx)).
        mix: complex (K, C) colour mix: the fitted kernel is ``Re(mix[:, :, None, None] * psi)``.
        residual: (K,) relative residual ``||fit - kernel|| / ||kernel||`` (0 = exact).
        leakage: (K,) :func:`negative_frequency_leakage` of the fitted complex kernels.
        size: (kh, kw).
    """

    freq: Tensor
    theta: Tensor
    sigma: Tensor
    centre: Tensor
    mix: Tensor
    residual: Tensor
    leakage: Tensor
    size: tuple[int, int]

    def kernels(self) -> Tensor:
        """Complex (K, C, kh, kw) fitted kernels; their real parts approximate the inputs."""
        psi = gabor_kernels(self.freq, self.theta, self.sigma, self.centre, self.size)
        return self.mix[:, :, None, None] * psi[:, None]


def _ls_mix(w: Tensor, psi: Tensor) -> tuple[Tensor, Tensor]:
    """Best complex mix z (K, C) with Re(z psi) ~ w (K, C, n), and the relative residual (K,)."""
    re, im = psi.real.flatten(1), psi.imag.flatten(1)
    rr, ii, ri = (re * re).sum(1), (im * im).sum(1), (re * im).sum(1)
    wr, wi = (w * re[:, None]).sum(2), (w * im[:, None]).sum(2)
    det = (rr * ii - ri**2).clamp_min(1e-12)[:, None]
    alpha = (ii[:, None] * wr - ri[:, None] * wi) / det
    beta = (rr[:, None] * wi - ri[:, None] * wr) / det
    fit = alpha[..., None] * re[:, None] + beta[..., None] * im[:, None]
    resid = (fit - w).pow(2).sum((1, 2)) / w.pow(2).sum((1, 2)).clamp_min(1e-30)
    return torch.complex(alpha, -beta), resid.sqrt()


def _initial_guess(w: Tensor, size: tuple[int, int], pad: int = 64) -> tuple[Tensor, Tensor]:
    """Frequency (rad/px) and direction of the spectral peak of each kernel's dominant colour component."""
    _, _, vh = torch.linalg.svd(w, full_matrices=False)
    spatial = vh[:, 0].reshape(-1, *size)
    spec = torch.fft.fft2(spatial, s=(pad, pad)).abs()
    spec[:, 0, 0] = 0
    flat = spec.flatten(1).argmax(1)
    grid = torch.fft.fftfreq(pad, dtype=w.dtype)
    fy, fx = grid[flat // pad], grid[flat % pad]
    return (2 * math.pi * torch.hypot(fy, fx)).clamp(*_FREQ_RANGE), torch.atan2(fy, fx)


def fit_gabor(kernels: Tensor, *, steps: int = 150, lr: float = 0.05) -> GaborFit:
    """Fit each real kernel with the real part of a complex Gabor (least squares).

    The colour mix is solved in closed form for every geometry; frequency,
    orientation, envelope (``sigma_u * freq >= MIN_SIGMA_FREQ``) and centre are
    optimised with Adam from 4 starts per kernel (the spectral peak and half its
    frequency, two envelope widths); the best start is kept.

    Args:
        kernels: (K, C, kh, kw) real kernels, e.g. a trained first layer's weights.
        steps: Adam steps.
        lr: Adam learning rate.

    Returns:
        :class:`GaborFit`, with the relative residual of each kernel.

    Examples:
        >>> true = gabor_kernels(torch.tensor([1.2]), torch.tensor([0.5]), torch.tensor([[2.0, 1.5]]),
        ...                      torch.zeros(1, 2), (7, 7))
        >>> fit = fit_gabor(true.real[:, None].repeat(1, 3, 1, 1), steps=60)
        >>> bool(fit.residual[0] < 0.02)
        True
    """
    check_shape(kernels, ["K", "C", "kh", "kw"], "kernels")
    size = (int(kernels.shape[2]), int(kernels.shape[3]))
    w = kernels.detach().to("cpu", torch.float64).flatten(2)
    k = w.shape[0]
    freq0, theta0 = _initial_guess(w, size)
    starts = [(1.0, 0.18), (1.0, 0.32), (0.5, 0.18), (0.5, 0.32)]
    n = len(starts)
    freq = torch.cat([(freq0 * f).clamp(*_FREQ_RANGE) for f, _ in starts])
    sig = torch.cat([torch.full((k,), s * max(size), dtype=torch.float64) for _, s in starts])
    raw = {
        "freq": freq.clone().requires_grad_(),
        "theta": theta0.repeat(n).clone().requires_grad_(),
        "log_sigma": torch.stack([sig, sig], 1).log().requires_grad_(),
        "centre": torch.zeros(k * n, 2, dtype=torch.float64, requires_grad=True),
    }
    target = w.repeat(n, 1, 1)
    half = torch.tensor(size, dtype=torch.float64) / 2

    def geometry() -> tuple[Tensor, Tensor, Tensor, Tensor]:
        f = raw["freq"].clamp(*_FREQ_RANGE)
        sigma = raw["log_sigma"].exp().clamp(0.5, 2.0 * max(size))
        sigma = torch.stack([torch.maximum(sigma[:, 0], MIN_SIGMA_FREQ / f), sigma[:, 1]], 1)
        return f, raw["theta"], sigma, torch.maximum(torch.minimum(raw["centre"], half), -half)

    opt = torch.optim.Adam(list(raw.values()), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            _, resid = _ls_mix(target, gabor_kernels(*geometry(), size))
            resid.pow(2).sum().backward()
            opt.step()
    with torch.no_grad():
        f, th, sg, ce = geometry()
        mix, resid = _ls_mix(target, gabor_kernels(f, th, sg, ce, size))
        best = resid.view(n, k).argmin(0) * k + torch.arange(k)
        f, th, sg, ce = f[best], th[best], sg[best], ce[best]
        leak = negative_frequency_leakage(gabor_kernels(f, th, sg, ce, size), th)
    return GaborFit(f, th, sg, ce, mix[best], resid[best], leak, size)


def negative_frequency_leakage(kernels: Tensor, theta: Tensor, pad: int = 64) -> Tensor:
    """Share of each complex kernel's spectral energy in the half-plane opposite its carrier.

    0 for an analytic kernel (real and imaginary parts a Hilbert pair along
    ``theta``), 0.5 for a real kernel.

    Args:
        kernels: complex (K, kh, kw).
        theta: (K,) carrier directions, radians.
        pad: DFT size (px) the kernels are zero-padded to.

    Returns:
        (K,) floats in [0, 1].
    """
    check_shape(kernels, ["K", "kh", "kw"], "kernels")
    spec = torch.fft.fft2(kernels.detach().to(torch.complex128), s=(pad, pad)).abs().pow(2)
    f = torch.fft.fftfreq(pad, dtype=torch.float64)
    th = theta.detach().to(torch.float64).view(-1, 1, 1)
    along = f.view(1, 1, -1) * torch.cos(th) + f.view(1, -1, 1) * torch.sin(th)
    return (spec * (along < 0)).sum((1, 2)) / spec.sum((1, 2)).clamp_min(1e-30)
