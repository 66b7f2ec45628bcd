"""Relation networks (Sung et al. 2018): a learned similarity instead of a fixed metric.

An embedding module ``f_phi`` maps each image to a feature map; for a query ``x_j`` and class
``i`` (pooled over its K support feature maps), a relation module ``g_phi`` scores the pair::

    r_ij = g_phi( concat( (1/K) sum_{x in S_i} f_phi(x), f_phi(x_j) ) )  in (0, 1)

and training regresses the relation scores onto the match indicator with a mean-squared error,
``sum_ij (r_ij - 1[y_i == y_j])^2``. The query is assigned the class with the highest score.

Sung et al. pool the K supports with a sum and train one model per K. We divide the sum by K (the
same function when the model is trained and tested with one K: for K = 1 nothing changes), so that
one model trained on 1-shot episodes can be tested on 5-shot ones: with a plain sum, the 5-shot
class maps are 5x larger than any the relation module saw in training (our 1-shot-trained model
scored 46% on 5-way 5-shot that way, and 98.6% on 5-way 1-shot).

Omniglot architecture of the paper: the embedding is 4 conv blocks (64 filters, BN, ReLU), max-
pooling after the first two only (28x28 -> 64x7x7); the relation module is 2 conv blocks with
pooling (128x7x7 -> 64x3x3 -> 64x1x1) then FC 8 (ReLU) and FC 1 (sigmoid).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Run, Target, recipe
from ..nn.backbones import Conv4, conv_block
from .train import EpisodicConfig, evaluate_model, load_data, train_episodic


class RelationModule(nn.Module):
    def __init__(self, width: int = 64, hidden: int = 8, feature_size: int = 7):
        super().__init__()
        self.convs = nn.Sequential(conv_block(2 * width, width), conv_block(width, width))
        out = (feature_size // 2) // 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(width * out * out, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, 1))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        """Scores of concatenated pairs ``(P, 2C, h, w)`` -> ``(P,)`` in (0, 1)."""
        return torch.sigmoid(self.fc(self.convs(pairs))).squeeze(-1)

    def score_all(self, classes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """``forward`` on every (query, class) concatenation, ``(M, N)``, without building them.

        The first convolution is linear in its input, so on a concatenation it splits into one
        convolution per half: ``W * [c; q] + b = W_c * c + (W_q * q + b)`` (zero padding splits
        the same way). Each class and each query map is convolved once, not once per pair; the
        pairs meet at the sum. This first layer is most of the module's work (at 7x7, before any
        pooling), so scoring M x N pairs costs about as much as M + N of them did."""
        conv = self.convs[0][0]
        c = classes.shape[1]
        a = F.conv2d(classes, conv.weight[:, :c], None, padding=conv.padding)  # (N, W, h, w)
        b = F.conv2d(queries, conv.weight[:, c:], conv.bias, padding=conv.padding)  # (M, W, h, w)
        h = (b.unsqueeze(1) + a.unsqueeze(0)).flatten(0, 1)  # (M*N, W, h, w), query-major
        h = self.convs[1](self.convs[0][1:](h))  # the first block's BN, ReLU, pool; the second block
        return torch.sigmoid(self.fc(h)).squeeze(-1).view(queries.shape[0], classes.shape[0])


class RelationNet(nn.Module):
    def __init__(self, width: int = 64, hidden: int = 8, image_size: int = 28):
        super().__init__()
        self.encoder = Conv4(width=width, pool_blocks=2, flatten=False, image_size=image_size)
        self.relation = RelationModule(width, hidden, self.encoder.feature_shape[1])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, C, h, w)

    def scores(self, zs: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """Relation scores ``(M, N)`` between queries ``zq (M, C, h, w)`` and classes of ``zs (N, K, C, h, w)``."""
        classes = zs.mean(dim=1)  # (N, C, h, w): the sum over the K supports, divided by K
        return self.relation.score_all(classes, zq)

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(scores, F.one_hot(y, scores.shape[1]).to(scores.dtype))


@dataclass
class RelationConfig(EpisodicConfig):
    train_way: int = 20  # N of the training episodes
    train_shot: int = 1  # K of the training episodes
    train_query: int = 10  # queries per class in a training episode
    width: int = 64  # filters per conv block
    hidden: int = 8  # hidden units of the relation module's first FC layer
    eval_settings: str = "5-1,5-5,20-1"  # N-K test settings


@recipe("omniglot-relation", lecture=13, section="Metric embeddings (relation networks)", config=RelationConfig,
        datasets=("omniglot",),
        presets={"quick": {"train_classes": 200, "test_classes": 60, "train_way": 5, "train_query": 5, "episodes": 60,
                           "eval_settings": "5-1", "eval_episodes": 50, "eval_query": 5, "ckpt_every": 0,
                           "log_every": 10}},
        target=Target("accuracy", ">=", 0.97, "5-way 1-shot; Sung et al. 2018: 99.6"))
def omniglot_relation(cfg: RelationConfig, run: Run) -> dict[str, float]:
    """Relation networks (learned relation module, MSE on match scores) on Omniglot."""
    train, test = load_data(cfg)
    model = RelationNet(cfg.width, cfg.hidden)
    sec = train_episodic(cfg, run, model, train)
    result = evaluate_model(cfg, run, model, test)
    result["throughput"] = min(cfg.train_way, train.n_classes) * (cfg.train_shot + cfg.train_query) / sec
    return result
