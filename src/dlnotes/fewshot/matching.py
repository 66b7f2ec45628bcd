"""Matching networks (Vinyals et al. 2016): attention over the support set.

A query ``x`` is classified by attending over the labelled supports ``(x_i, y_i)`` of the episode::

    P(y | x, S) = sum_i a(x, x_i) y_i,      a(x, x_i) = softmax_i( s * cos(f(x), g(x_i)) )

with ``y_i`` one-hot, so a class's probability is the total attention on its supports (with K
shots, the K supports of a class add up), and the prediction is ``argmax_y P(y | x, S)``. Training
minimises ``-log P(y | x, S)`` on random episodes. ``f = g`` is the 4-block conv net; ``s`` is a
learnable inverse temperature (initialised at ``cos_scale``; cosine similarities alone lie in
[-1, 1] and give a softmax too flat to train quickly; ``learn_scale=False, cos_scale=1`` is the
paper's plain kernel).

Full-context embeddings (optional, ``fce=True``): supports are embedded in the context of the
whole support set by a bidirectional LSTM, ``g(x_i, S) = h_i^fwd + h_i^bwd + g'(x_i)``, and the
query by an attention LSTM run for ``fce_steps`` steps::

    h_hat_k, c_k = LSTM(f'(x), [h_{k-1} + r_{k-1}], c_{k-1});   h_k = h_hat_k + f'(x)
    r_k = sum_i softmax_i(h_k . g(x_i, S)) g(x_i, S);           f(x, S) = h_K
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Run, Target, recipe
from ..nn.backbones import Conv4
from .train import EpisodicConfig, evaluate_model, load_data, train_episodic


class FullContextEmbedding(nn.Module):
    def __init__(self, dim: int, steps: int = 5):
        super().__init__()
        self.support_lstm = nn.LSTM(dim, dim, bidirectional=True, batch_first=True)
        self.query_cell = nn.LSTMCell(dim, dim)
        self.steps = steps

    def supports(self, gs: torch.Tensor) -> torch.Tensor:
        """``(S, D)`` support embeddings in episode order -> context embeddings ``(S, D)``."""
        out, _ = self.support_lstm(gs.unsqueeze(0))  # (1, S, 2D)
        d = gs.shape[-1]
        return gs + out[0, :, :d] + out[0, :, d:]

    def queries(self, fq: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """``(M, D)`` query embeddings attended against ``g (S, D)`` for ``steps`` steps."""
        h, c = torch.zeros_like(fq), torch.zeros_like(fq)
        r = torch.zeros_like(fq)
        for _ in range(self.steps):
            h_hat, c = self.query_cell(fq, (h + r, c))
            h = h_hat + fq  # (M, D)
            r = torch.softmax(h @ g.T, dim=-1) @ g  # (M, D) read-out of the supports
        return h


class MatchingNet(nn.Module):
    def __init__(self, width: int = 64, cos_scale: float = 10.0, learn_scale: bool = True, fce: bool = False,
                 fce_steps: int = 5):
        super().__init__()
        self.encoder = Conv4(width=width)
        log_s = torch.tensor(math.log(cos_scale))
        self.log_scale = nn.Parameter(log_s) if learn_scale else nn.Buffer(log_s)
        self.fce = FullContextEmbedding(self.encoder.out_dim, fce_steps) if fce else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, D)

    def scores(self, zs: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """``log P(y | x, S)`` for queries ``zq (M, D)`` over the ``N`` classes of ``zs (N, K, D)``."""
        n, k, d = zs.shape
        g = zs.reshape(n * k, d)  # (S, D), supports class-major
        f = zq
        if self.fce is not None:
            g = self.fce.supports(g)
            f = self.fce.queries(zq, g)
        cos = F.normalize(f, dim=-1) @ F.normalize(g, dim=-1).T  # (M, S)
        attention = torch.softmax(self.log_scale.exp() * cos, dim=-1)  # a(x, x_i)
        p = attention.view(-1, n, k).sum(-1)  # (M, N): sum_i a(x, x_i) y_i
        return torch.log(p.clamp_min(1e-12))

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(scores, y)


@dataclass
class MatchingConfig(EpisodicConfig):
    train_way: int = 20  # Vinyals et al. train with the test-time N; 20-way gives one model for all tests
    train_shot: int = 1  # K of the training episodes
    train_query: int = 5  # queries per class in a training episode
    width: int = 64  # filters per conv block
    cos_scale: float = 10.0  # initial inverse temperature s of the cosine attention
    learn_scale: bool = True  # learn s (false: keep it fixed)
    fce: bool = False  # full-context embeddings (bidirectional LSTM + attention LSTM)
    fce_steps: int = 5  # processing steps of the attention LSTM


@recipe("omniglot-matching", lecture=13, section="Metric embeddings (matching networks)", config=MatchingConfig,
        datasets=("omniglot",),
        presets={"quick": {"train_classes": 200, "test_classes": 60, "train_way": 10, "episodes": 30,
                           "eval_settings": "5-1,20-1", "eval_episodes": 100, "ckpt_every": 0, "log_every": 10}},
        target=Target("accuracy", ">=", 0.965, "5-way 1-shot; Vinyals et al. 2016: 98.1"))
def omniglot_matching(cfg: MatchingConfig, run: Run) -> dict[str, float]:
    """Matching networks (cosine attention over supports, optional FCE) on Omniglot."""
    train, test = load_data(cfg)
    model = MatchingNet(cfg.width, cfg.cos_scale, cfg.learn_scale, cfg.fce, cfg.fce_steps)
    sec = train_episodic(cfg, run, model, train)
    result = evaluate_model(cfg, run, model, test)
    result["throughput"] = min(cfg.train_way, train.n_classes) * (cfg.train_shot + cfg.train_query) / sec
    result["cos_scale"] = float(model.log_scale.detach().exp())
    return result
