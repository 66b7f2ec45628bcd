"""Triplet networks with semi-hard negative mining (Hoffer and Ailon 2015; Schroff et al. 2015).

Three weight-tied encoders embed an anchor ``x'``, a positive ``x''`` of the same class and a
negative ``x^-`` of another class; with ``d(a, b) = ||f(a) - f(b)||^2`` on L2-normalised
embeddings, the margin loss is::

    L = max(0, d(x', x'') - d(x', x^-) + margin)

Triplets are mined inside a batch of ``P`` classes x ``K`` drawings: every (anchor, positive) pair
is used, and its negative is *semi-hard*: the closest negative that is still farther than the
positive, ``d(a, p) < d(a, n)`` (hardest negatives early in training collapse the embedding).
When no negative is farther than the positive, the farthest negative is used instead.

Few-shot test: nearest class mean in the embedding space (1-shot: nearest neighbour).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Run, recipe
from ..nn.backbones import Conv4
from .episodes import EpisodeSampler, episode_images
from .train import evaluate_model, fit, load_data


def pairwise_sq_dist(z: torch.Tensor) -> torch.Tensor:
    return (z.unsqueeze(1) - z.unsqueeze(0)).pow(2).sum(-1)  # (B, B)


def semi_hard_triplet_loss(z: torch.Tensor, labels: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean margin loss over all (anchor, positive) pairs with semi-hard negatives.

    Returns ``(loss, negatives)`` where ``negatives[a, p]`` is the index chosen for that pair (-1 if
    the pair is not a positive pair)."""
    d = pairwise_sq_dist(z)  # (B, B)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    pos = same & ~eye  # (A, P) positive pairs
    d_ap = d.unsqueeze(2)  # (A, P, 1)
    d_an = d.unsqueeze(1)  # (A, 1, N)
    neg = ~same.unsqueeze(1)  # (A, 1, N) valid negatives of the anchor
    inf = torch.finfo(d.dtype).max
    semi = neg & (d_an > d_ap)  # (A, P, N): farther than the positive
    closest_semi = torch.where(semi, d_an, inf).argmin(-1)  # (A, P)
    farthest = torch.where(neg, d_an, -inf).expand_as(semi).argmax(-1)  # fallback when none is farther
    chosen = torch.where(semi.any(-1), closest_semi, farthest)  # (A, P)
    d_neg = d.gather(1, chosen)  # (A, P): d(a, chosen negative of pair (a, p))
    losses = F.relu(d - d_neg + margin)[pos]
    return losses.mean(), torch.where(pos, chosen, torch.full_like(chosen, -1))


class TripletNet(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.encoder = Conv4(width=width)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(x), dim=-1)  # (B, D), unit length

    def scores(self, zs: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        return -(zq.unsqueeze(1) - zs.mean(1).unsqueeze(0)).pow(2).sum(-1)  # nearest class mean


@dataclass
class TripletConfig:
    n_train_chars: int = 1200  # characters for training (the rest are test characters)
    train_classes: int = 0  # use only the first N training classes (0: all 4800)
    test_classes: int = 0  # use only the first N test classes (0: all 1692)
    classes_per_batch: int = 32  # P
    shots_per_class: int = 4  # K: drawings per class in a batch
    margin: float = 0.2  # margin of the triplet loss (on unit-length embeddings)
    episodes: int = 15000  # optimizer steps
    lr: float = 1e-3  # Adam learning rate
    lr_halve_every: int = 5000  # halve the learning rate every this many steps
    width: int = 64  # filters per conv block
    eval_settings: str = "5-1,5-5,20-1,20-5"  # N-K test settings
    eval_episodes: int = 1000  # test episodes per setting
    eval_query: int = 15  # queries per class at test
    log_every: int = 50  # steps between logged losses
    ckpt_every: int = 1000  # steps between checkpoints


@recipe("omniglot-triplet", lecture=13, section="Metric embeddings (triplet networks)", config=TripletConfig,
        datasets=("omniglot",),
        presets={"quick": {"train_classes": 200, "test_classes": 60, "classes_per_batch": 16, "episodes": 30,
                           "eval_settings": "5-1", "eval_episodes": 100, "log_every": 10, "ckpt_every": 0}})
def omniglot_triplet(cfg: TripletConfig, run: Run) -> dict[str, float]:
    """Triplet network with semi-hard mining on Omniglot; nearest-class-mean few-shot test."""
    train, test = load_data(cfg)
    model = TripletNet(cfg.width)
    sampler = EpisodeSampler(train.n_classes, train.n_drawings, cfg.classes_per_batch, cfg.shots_per_class, 0,
                             seed=torch.initial_seed())
    labels = torch.arange(cfg.classes_per_batch, device=run.device).repeat_interleave(cfg.shots_per_class)

    def step_loss(step):
        xs, _ = episode_images(train, *sampler.episode(step), device=run.device)
        z = model.embed(xs.flatten(0, 1)).float()  # (P*K, D)
        loss, _ = semi_hard_triplet_loss(z, labels, cfg.margin)
        # "accuracy": fraction of (anchor, positive) pairs closer than every negative of the anchor
        d = pairwise_sq_dist(z.detach())
        same = labels[:, None] == labels[None]
        nearest_neg = torch.where(same, torch.inf, d).amin(1, keepdim=True)  # (A, 1)
        pos = same & ~torch.eye(len(labels), dtype=torch.bool, device=d.device)
        return loss, (d < nearest_neg)[pos].float().mean().item()

    sec = fit(cfg, run, model, step_loss, unit="batch")
    result = evaluate_model(cfg, run, model, test)
    result["throughput"] = cfg.classes_per_batch * cfg.shots_per_class / sec
    return result
