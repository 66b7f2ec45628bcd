"""Batched image augmentations written as tensor operations (no per-image Python loop).

Each function takes ``x (B, C, H, W)`` in [0, 1] and a ``torch.Generator`` and draws independent
parameters per image:

* ``random_affine``: rotation, shear, scale and translation (Koch et al.'s Siamese augmentation),
  one ``affine_grid`` + ``grid_sample`` for the whole batch;
* ``random_resized_crop``: SimCLR's crop of a random area fraction and aspect ratio, resized back
  to ``H x W`` (also an affine sampling grid);
* ``random_hflip``: mirror a random half (only where the classes are mirror-invariant);
* ``gaussian_blur``: a per-image sigma, as a grouped separable convolution;
* ``gaussian_noise``: additive noise with a per-image standard deviation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return (lo + (hi - lo) * torch.rand(n, generator=g)).to(device)


def _sample(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(x: torch.Tensor, g: torch.Generator, degrees: float = 10.0, shear: float = 0.3,
                  scale: tuple[float, float] = (0.8, 1.2), translate: float = 0.1) -> torch.Tensor:
    """Random rotation (+-degrees), shear (+-shear), isotropic scale and translation (fraction of size)."""
    b, dev = x.shape[0], x.device
    a = _uniform(b, -degrees, degrees, g, dev) * math.pi / 180
    sh = _uniform(b, -shear, shear, g, dev)
    s = _uniform(b, scale[0], scale[1], g, dev)
    t = _uniform(2 * b, -2 * translate, 2 * translate, g, dev).view(b, 2)  # grid coordinates span 2
    cos, sin = torch.cos(a), torch.sin(a)
    # output -> input map: inverse scale of (rotation @ shear)
    m = torch.stack([torch.stack([cos, cos * sh - sin], -1), torch.stack([sin, sin * sh + cos], -1)], 1)  # (B, 2, 2)
    theta = torch.cat([m / s.view(b, 1, 1), t.unsqueeze(-1)], dim=2)  # (B, 2, 3)
    return _sample(x, theta)


def random_resized_crop(x: torch.Tensor, g: torch.Generator, area: tuple[float, float] = (0.3, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random ``area`` fraction with aspect ratio in ``ratio`` (log-uniform) and resize back."""
    b, dev = x.shape[0], x.device
    frac = _uniform(b, area[0], area[1], g, dev)
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), g, dev)
    r = torch.exp(log_r)
    w = torch.sqrt(frac * r).clamp(max=1.0)  # crop width / image width
    h = torch.sqrt(frac / r).clamp(max=1.0)
    cx = (_uniform(b, 0, 1, g, dev) * 2 - 1) * (1 - w)  # keep the crop inside the image
    cy = (_uniform(b, 0, 1, g, dev) * 2 - 1) * (1 - h)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w, zero, cx], -1), torch.stack([zero, h, cy], -1)], 1)  # (B, 2, 3)
    return _sample(x, theta)


def random_hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=g) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def gaussian_blur(x: torch.Tensor, g: torch.Generator, sigma: tuple[float, float] = (0.1, 1.5),
                  p: float = 0.5, size: int = 5) -> torch.Tensor:
    """Blur a random fraction ``p`` of the images, each with its own sigma (grouped separable conv)."""
    b, c, hh, ww = x.shape
    s = _uniform(b, sigma[0], sigma[1], g, x.device)
    r = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2
    k = torch.exp(-r.view(1, -1) ** 2 / (2 * s.view(-1, 1) ** 2))
    k = k / k.sum(-1, keepdim=True)  # (B, size)
    k = k.repeat_interleave(c, 0)  # (B*C, size): one kernel per image and channel
    y = x.reshape(1, b * c, hh, ww)
    y = F.conv2d(F.pad(y, (size // 2, size // 2, 0, 0), mode="reflect"), k.view(b * c, 1, 1, size), groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, size // 2, size // 2), mode="reflect"), k.view(b * c, 1, size, 1), groups=b * c)
    y = y.view(b, c, hh, ww)
    apply = (torch.rand(b, generator=g) < p).to(x.device).view(-1, 1, 1, 1)
    return torch.where(apply, y, x)


def gaussian_noise(x: torch.Tensor, g: torch.Generator, std: tuple[float, float] = (0.0, 0.1)) -> torch.Tensor:
    s = _uniform(x.shape[0], std[0], std[1], g, x.device).view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g).to(x.device)
    return (x + s * noise).clamp(0, 1)
