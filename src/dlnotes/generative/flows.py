"""Normalizing flows (Lecture 12): NICE's additive coupling and RealNVP's affine coupling.

Change of variables, as the notes derive it: if ``x = f(z)`` with ``f`` invertible and
differentiable, ``p(x) = p(z) |det dx/dz|^{-1}``; for a stack ``x = f_L o ... o f_1(z)``

    log p(x) = log p(z) - sum_i log |det dz_i/dz_{i-1}|.

Every layer here is written in both directions: ``decode(z) -> x`` is the notes' generative map
``f`` and ``encode(x) -> (z, logdet)`` is its inverse together with ``log|det dz/dx|`` (which is
``-log|det dx/dz|``), so ``log p(x) = log p(z) + sum logdet``.

* Additive coupling (NICE, the notes' reversible block): split the features into ``(z, u)``;
  ``x = z + F_theta(u)``, ``v = u``; inverse ``z = x - F_theta(u)``; Jacobian upper triangular with
  unit diagonal, so ``log det = 0`` (volume preserving). :class:`ReversibleBlock` chains two with
  the roles swapped, ``x' = z + F_theta(u)``, ``z' = u + F_psi(x')``, whose inverse is
  ``u = z' - F_psi(x')``, ``z = x' - F_theta(u)``. A diagonal scaling ``x = exp(S) z`` at the end
  (NICE) is the only volume change.
* Affine coupling (RealNVP): ``x = z * exp(F_theta(u)) + F_psi(u)``, inverse
  ``z = (x - F_psi(u)) * exp(-F_theta(u))``, ``det J = exp(sum_i F_theta(u)_i)``. The scale is
  bounded, ``F_theta = c * tanh(.)`` with a learnt per-channel ``c``, for stability. Images use
  checkerboard and channel masks, a squeeze ``(C,H,W) -> (4C,H/2,W/2)`` and a multi-scale
  architecture that factors half of the variables out after each scale.
* Training is exact maximum likelihood on dequantised data ``x = (pixel + U(0,1)) / 256``; the
  discrete-data bound in bits per dimension is ``(-log p(x) + D log 256) / (D log 2)``. RealNVP
  models ``logit(a + (1-2a) x)`` and adds that map's log-determinant. Sampling runs ``decode`` on
  prior draws.

The recipes built from these layers: ``nice-mnist`` and ``realnvp-mnist`` in
:mod:`dlnotes.generative.flows_mnist`, the 2-D densities in :mod:`dlnotes.generative.flows2d`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- priors
def gaussian_logp(z: torch.Tensor) -> torch.Tensor:
    """Standard normal log density summed over all but the batch dimension."""
    return (-0.5 * (z ** 2 + LOG2PI)).flatten(1).sum(1)


def logistic_logp(z: torch.Tensor) -> torch.Tensor:
    """Standard logistic log density (NICE's prior on MNIST): ``-log(1+e^z) - log(1+e^-z)``."""
    return (-(F.softplus(z) + F.softplus(-z))).flatten(1).sum(1)


def sample_prior(prior: str, shape, generator=None) -> torch.Tensor:
    if prior == "gaussian":
        return torch.randn(shape, generator=generator)
    u = torch.rand(shape, generator=generator).clamp(1e-6, 1 - 1e-6)
    return torch.log(u) - torch.log1p(-u)  # inverse CDF of the logistic


# ----------------------------------------------------------------------------- NICE
def mlp(d_in: int, d_out: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers; the last linear layer starts at zero (the flow starts as identity)."""
    mods, d = [], d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    last = nn.Linear(d, d_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*mods, last)


class ReversibleBlock(nn.Module):
    """Two additive coupling layers with swapped roles (the notes' two-layer block).

    ``first``/``second`` index the two halves of the feature vector (even/odd pixels for images).
    """

    def __init__(self, first: torch.Tensor, second: torch.Tensor, hidden: int, layers: int):
        super().__init__()
        self.register_buffer("first", first.clone())
        self.register_buffer("second", second.clone())
        self.F_theta = mlp(len(second), len(first), hidden, layers)
        self.F_psi = mlp(len(first), len(second), hidden, layers)

    def decode(self, z_full: torch.Tensor) -> torch.Tensor:
        z, u = z_full[:, self.first], z_full[:, self.second]
        x1 = z + self.F_theta(u)  # x' = z + F_theta(u)
        z1 = u + self.F_psi(x1)  # z' = u + F_psi(x')
        return self._merge(x1, z1)

    def encode(self, x_full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, z1 = x_full[:, self.first], x_full[:, self.second]
        u = z1 - self.F_psi(x1)  # u = z' - F_psi(x')
        z = x1 - self.F_theta(u)  # z = x' - F_theta(u)
        return self._merge(z, u), x_full.new_zeros(x_full.shape[0])  # volume preserving

    def _merge(self, a, b):
        out = a.new_empty(a.shape[0], len(self.first) + len(self.second))
        out[:, self.first], out[:, self.second] = a, b
        return out


class DiagonalScaling(nn.Module):
    """``x = exp(S) * z`` (decode); ``z = exp(-S) * x`` with ``log|det dz/dx| = -sum S``."""

    def __init__(self, dim: int):
        super().__init__()
        self.S = nn.Parameter(torch.zeros(dim))

    def decode(self, z):
        return z * torch.exp(self.S)

    def encode(self, x):
        return x * torch.exp(-self.S), (-self.S.sum()).expand(x.shape[0])


class NICE(nn.Module):
    """Flattened input ``(B, D)``: ``blocks`` reversible blocks (2 couplings each) + diagonal scaling."""

    def __init__(self, dim: int, hidden: int = 1000, layers: int = 5, blocks: int = 2, prior: str = "logistic"):
        super().__init__()
        idx = torch.arange(dim)
        even, odd = idx[0::2], idx[1::2]
        self.blocks = nn.ModuleList(ReversibleBlock(even, odd, hidden, layers) if i % 2 == 0 else
                                    ReversibleBlock(odd, even, hidden, layers) for i in range(blocks))
        self.scale = DiagonalScaling(dim)
        self.prior, self.dim = prior, dim

    def encode(self, x):
        logdet = x.new_zeros(x.shape[0])
        for b in self.blocks:
            x, ld = b.encode(x)
            logdet = logdet + ld
        z, ld = self.scale.encode(x)
        return z, logdet + ld

    def decode(self, z):
        x = self.scale.decode(z)
        for b in reversed(self.blocks):
            x = b.decode(x)
        return x

    def log_prob(self, x):
        z, logdet = self.encode(x.flatten(1))
        logp = gaussian_logp(z) if self.prior == "gaussian" else logistic_logp(z)
        return logp + logdet

    @torch.no_grad()
    def sample(self, n: int, generator=None):
        z = sample_prior(self.prior, (n, self.dim), generator)  # drawn on the CPU: same samples on any device
        return self.decode(z.to(self.scale.S.device))


# ----------------------------------------------------------------------------- RealNVP
class AffineCoupling(nn.Module):
    """Masked affine coupling; ``mask`` = 1 on the conditioning part ``u`` (kept as is).

    ``net(u)`` returns ``(s_raw, t)``; ``F_theta = c * tanh(s_raw)``, ``F_psi = t``, both zeroed on
    ``u``'s positions so only the other part is transformed.
    """

    def __init__(self, mask: torch.Tensor, net: nn.Module, channels: int):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = net
        self.c = nn.Parameter(torch.ones(channels))  # bound of the log-scale per channel/feature

    def _s_t(self, u):
        # at least fp32 from here on (bf16 autocast leaves the net's output in bf16); fp64 stays fp64
        s_raw, t = self.net(u).to(torch.promote_types(u.dtype, torch.float32)).chunk(2, dim=1)
        c = self.c.view(1, -1, *([1] * (u.dim() - 2)))
        keep = 1 - self.mask
        return c * torch.tanh(s_raw) * keep, t * keep

    def encode(self, x):
        u = x * self.mask
        s, t = self._s_t(u)
        z = u + (1 - self.mask) * (x - t) * torch.exp(-s)  # z = (x - F_psi(u)) exp(-F_theta(u))
        return z, -s.flatten(1).sum(1)

    def decode(self, z):
        u = z * self.mask
        s, t = self._s_t(u)
        return u + (1 - self.mask) * (z * torch.exp(s) + t)  # x = z exp(F_theta(u)) + F_psi(u)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


def conv_net(c_in: int, hidden: int, blocks: int) -> nn.Sequential:
    """Small ResNet giving ``(s_raw, t)`` stacked on channels; last conv zero-initialised."""
    last = nn.Conv2d(hidden, 2 * c_in, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), *[ResBlock(hidden) for _ in range(blocks)],
                         nn.BatchNorm2d(hidden), nn.ReLU(), last)


def checkerboard(c: int, h: int, w: int, parity: int) -> torch.Tensor:
    ij = torch.arange(h).view(-1, 1) + torch.arange(w).view(1, -1)
    return ((ij + parity) % 2).float().expand(c, h, w).clone()  # (C, H, W)


def channel_mask(c: int, parity: int) -> torch.Tensor:
    m = torch.zeros(c, 1, 1)
    m[: c // 2] = 1.0
    return 1 - m if parity else m  # (C, 1, 1)


def squeeze(x):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch becomes 4 channels."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x):
    b, c, h, w = x.shape
    x = x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, 2 * h, 2 * w)


class RealNVP(nn.Module):
    """Multi-scale RealNVP for (C, H, W) images.

    Each of the first ``scales - 1`` scales: 3 checkerboard couplings, squeeze, 3 channel
    couplings, then half of the channels leave as latents. The last scale: 4 checkerboard couplings.
    """

    def __init__(self, shape=(1, 28, 28), scales: int = 2, hidden: int = 64, blocks: int = 4):
        super().__init__()
        c, h, w = shape
        self.shape = shape
        self.levels = nn.ModuleList()
        self.z_shapes = []
        for s in range(scales):
            layers = nn.ModuleList()
            last = s == scales - 1
            for i in range(4 if last else 3):
                layers.append(AffineCoupling(checkerboard(c, h, w, i % 2), conv_net(c, hidden, blocks), c))
            if not last:
                c, h, w = 4 * c, h // 2, w // 2
                for i in range(3):
                    layers.append(AffineCoupling(channel_mask(c, i % 2), conv_net(c, hidden, blocks), c))
                self.z_shapes.append((c // 2, h, w))
                c = c - c // 2
            self.levels.append(layers)
        self.z_shapes.append((c, h, w))

    def encode(self, x):
        logdet = x.new_zeros(x.shape[0])
        zs = []
        for s, layers in enumerate(self.levels):
            last = s == len(self.levels) - 1
            for i, layer in enumerate(layers):
                if not last and i == 3:
                    x = squeeze(x)
                x, ld = layer.encode(x)
                logdet = logdet + ld
            if not last:
                k = self.z_shapes[s][0]
                zs.append(x[:, :k])  # factored out: (B, C/2, H, W)
                x = x[:, k:]
        zs.append(x)
        return torch.cat([z.flatten(1) for z in zs], 1), logdet

    def decode(self, z_flat):
        zs, i = [], 0
        for shp in self.z_shapes:
            n = int(np.prod(shp))
            zs.append(z_flat[:, i:i + n].view(-1, *shp))
            i += n
        x = zs[-1]
        for s in reversed(range(len(self.levels))):
            layers = self.levels[s]
            last = s == len(self.levels) - 1
            if not last:
                x = torch.cat([zs[s], x], 1)
            for j in reversed(range(len(layers))):
                x = layers[j].decode(x)
                if not last and j == 3:
                    x = unsqueeze(x)
        return x

    def log_prob(self, x):
        z, logdet = self.encode(x)
        return gaussian_logp(z) + logdet

    @torch.no_grad()
    def sample(self, n: int, generator=None):
        z = torch.randn(n, int(np.prod(self.shape)), generator=generator)  # CPU draw, as in NICE.sample
        return self.decode(z.to(next(self.parameters()).device))


class LogitTransform(nn.Module):
    """``y = logit(a + (1 - 2a) x)`` for x in [0, 1]; ``log|dy/dx| = log(1-2a) - log s - log(1-s)``."""

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        self.alpha = alpha

    def encode(self, x):
        s = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        ld = (math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        return y, ld

    def decode(self, y):
        return ((torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)).clamp(0, 1)


class ImageFlow(nn.Module):
    """Data-space wrapper: (optional logit) + flow; ``log_prob`` of dequantised images in [0, 1]."""

    def __init__(self, flow: nn.Module, logit_alpha: float = 0.0):
        super().__init__()
        self.flow = flow
        self.logit = LogitTransform(logit_alpha) if logit_alpha > 0 else None

    def log_prob(self, x):  # x: (B, C, H, W) in [0, 1]
        ld = x.new_zeros(x.shape[0])
        if self.logit is not None:
            x, ld = self.logit.encode(x)
        return self.flow.log_prob(x) + ld

    @torch.no_grad()
    def sample(self, n, shape, generator=None):
        x = self.flow.sample(n, generator).view(n, *shape)
        return self.logit.decode(x) if self.logit is not None else x.clamp(0, 1)


def bits_per_dim(logp_unit: torch.Tensor, dims: int) -> torch.Tensor:
    """Discrete-data bits/dim from log p of dequantised data on [0, 1]^D."""
    return (-logp_unit + dims * math.log(256)) / (dims * math.log(2))


def dequantise(pixels_u8: torch.Tensor, generator=None) -> torch.Tensor:
    """uint8 (B, H, W) -> (B, 1, H, W) in [0, 1): ``(pixel + U(0, 1)) / 256``."""
    x = pixels_u8.float().unsqueeze(1)
    return (x + torch.rand(x.shape, generator=generator)) / 256.0
