"""Siamese networks for one-shot classification (Koch, Zemel and Salakhutdinov 2015), as in the notes.

Two weight-tied encoders ``f_theta`` embed a pair of images; the coordinate-wise distance::

    g(x_i, x_j) = | f_theta(x_i) - f_theta(x_j) |

feeds a second network giving the probability that the two are the same class::

    p(x_i, x_j) = sigma(W g(x_i, x_j) + b)

trained with binary cross-entropy on same / different pairs of training characters, each image
distorted by a random affine transform (rotation, shear, scale, translation). One-shot test: match
the query against every support and take the best match, ``c(x) = argmax_{i in S} p(x, x_i)``
(with K shots per class, a class's score is its best-matching support).

``f_theta`` is the 4-block conv net with pooling after the first three blocks (64x3x3) followed by a
fully connected layer with sigmoid units, a scaled-down version of Koch et al.'s 4096-unit layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Run, Target, recipe
from ..nn.backbones import Conv4, to_float
from ..selfsup.augment import random_affine
from .train import evaluate_model, fit, load_data


class SiameseNet(nn.Module):
    def __init__(self, width: int = 64, feature_dim: int = 512):
        super().__init__()
        self.encoder = nn.Sequential(Conv4(width=width, pool_blocks=3), nn.Linear(width * 9, feature_dim),
                                     nn.Sigmoid())
        self.match = nn.Linear(feature_dim, 1)  # W, b

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, D)

    def pair_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``W |f(x_i) - f(x_j)| + b`` for embeddings broadcastable to ``(..., D)``."""
        return self.match((a - b).abs()).squeeze(-1)

    def scores(self, zs: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """Best match per class: ``(M, N)`` logits for ``zq (M, D)`` against ``zs (N, K, D)``."""
        return self.pair_logits(zq[:, None, None, :], zs[None]).amax(-1)  # (M, N, K) -> (M, N)

    def loss(self, logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, same)


def sample_pairs(images: torch.Tensor, batch: int, g: torch.Generator):
    """Half same-class, half different-class pairs from ``images (C, D, H, W)``:
    returns indices ``(c1, d1), (c2, d2)`` and targets ``same (B,)``."""
    c, d = images.shape[:2]
    half = batch // 2
    c1 = torch.randint(0, c, (batch,), generator=g)
    c2 = c1.clone()
    c2[half:] = (c1[half:] + torch.randint(1, c, (batch - half,), generator=g)) % c  # a different class
    d1 = torch.randint(0, d, (batch,), generator=g)
    d2 = torch.randint(0, d, (batch,), generator=g)
    d2[:half] = (d1[:half] + torch.randint(1, d, (half,), generator=g)) % d  # another drawing of the same class
    same = torch.cat([torch.ones(half), torch.zeros(batch - half)])
    return (c1, d1), (c2, d2), same


@dataclass
class SiameseConfig:
    n_train_chars: int = 1200  # characters for training (the rest are test characters)
    train_classes: int = 0  # use only the first N training classes (0: all 4800)
    test_classes: int = 0  # use only the first N test classes (0: all 1692)
    batch: int = 128  # pairs per step (half same, half different)
    augment: bool = True  # random affine distortions of both images
    episodes: int = 30000  # optimizer steps
    lr: float = 1e-3  # Adam learning rate
    lr_halve_every: int = 10000  # halve the learning rate every this many steps
    width: int = 64  # filters per conv block
    feature_dim: int = 512  # sigmoid feature units of f_theta
    eval_settings: str = "20-1,5-1"  # N-K test settings; the first gives ``accuracy``
    eval_episodes: int = 1000  # test episodes per setting
    eval_query: int = 15  # queries per class at test
    log_every: int = 50  # steps between logged losses
    ckpt_every: int = 2000  # steps between checkpoints


@recipe("omniglot-siamese", lecture=13, section="Metric embeddings (Siamese networks)", config=SiameseConfig,
        datasets=("omniglot",),
        presets={"quick": {"train_classes": 200, "test_classes": 60, "batch": 64, "episodes": 30, "eval_episodes": 100,
                           "log_every": 10, "ckpt_every": 0}},
        target=Target("accuracy", ">=", 0.85, "20-way 1-shot; Koch et al. 2015: 92.0"))
def omniglot_siamese(cfg: SiameseConfig, run: Run) -> dict[str, float]:
    """Siamese network (same/different pairs, |f(x_i) - f(x_j)|, sigma(W g)) with one-shot matching."""
    train, test = load_data(cfg)
    model = SiameseNet(cfg.width, cfg.feature_dim)
    seed = torch.initial_seed()

    def step_loss(step):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        (c1, d1), (c2, d2), same = sample_pairs(train.images, cfg.batch, g)
        x = to_float(torch.cat([train.images[c1, d1], train.images[c2, d2]]).to(run.device))  # (2B, 1, H, W)
        if cfg.augment:
            x = random_affine(x, g)
        z = model.embed(x)
        logits = model.pair_logits(z[: cfg.batch], z[cfg.batch:]).float()
        same = same.to(run.device)
        return model.loss(logits, same), ((logits > 0).float() == same).float().mean().item()

    sec = fit(cfg, run, model, step_loss, unit="batch")
    result = evaluate_model(cfg, run, model, test)
    result["throughput"] = 2 * cfg.batch / sec  # training images per second
    return result
