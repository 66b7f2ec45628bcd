"""Exponential moving average of a model's weights, the copy that diffusion models and GANs sample from.

    theta_ema <- decay * theta_ema + (1 - decay) * theta        after every optimiser step

Floating-point buffers (BatchNorm running statistics) are averaged the same way; integer buffers
(``num_batches_tracked``) are copied. Ho et al. (2020) sample DDPM from an EMA with decay 0.9999;
Yazici et al. (2019, "The unusual effectiveness of averaging in GAN training") show the same for GANs.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """An eval-mode, gradient-free copy of ``model`` that tracks its weights with decay ``decay``."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1) (got {decay})")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module):
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.lerp_(p, 1 - self.decay)
            else:
                e.copy_(p)

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, sd):
        self.model.load_state_dict(sd)
