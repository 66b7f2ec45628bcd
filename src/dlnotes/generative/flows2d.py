"""Normalizing flows on 2-D densities (Lecture 12): NICE and RealNVP side by side.

The layers and the change-of-variables bookkeeping are those of :mod:`dlnotes.generative.flows`
(``log p(x) = log p(z) + sum_i log|det dz_i/dz_{i-1}|``). Here both flow families fit toy densities
by exact maximum likelihood, where the true density is known and can be drawn:

* ``flow-2d-moons``: two moons (scikit-learn, noise 0.05, centred and scaled by 2);
* ``flow-2d-8gaussians``: 8 Gaussians on a circle of radius 2 (std 0.2), whose exact NLL is the floor.

A RealNVP here alternates affine couplings that transform one coordinate given the other; NICE is
the additive version with a final diagonal scaling. The recipes report test NLL in nats and plot
each model's density beside the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.sampling import StepSampler
from ..engine import Run, Target, recipe
from ..engine.run import load_run_weights
from .flows import LOG2PI, NICE, AffineCoupling, gaussian_logp, mlp


class Flow2D(nn.Module):
    """Toy 2-D flows: NICE (additive blocks + scaling) or RealNVP (alternating affine couplings)."""

    def __init__(self, kind: str = "realnvp", couplings: int = 8, hidden: int = 64, layers: int = 2):
        super().__init__()
        self.kind = kind
        if kind == "nice":
            self.body = NICE(2, hidden, layers, blocks=couplings // 2, prior="gaussian")
        elif kind == "realnvp":
            self.couplings = nn.ModuleList(
                AffineCoupling(torch.tensor([1.0, 0.0]) if i % 2 == 0 else torch.tensor([0.0, 1.0]),
                               mlp(2, 4, hidden, layers), 2) for i in range(couplings))
        else:
            raise ValueError(f"kind must be nice or realnvp, not {kind!r}")

    def encode(self, x):
        if self.kind == "nice":
            return self.body.encode(x)
        logdet = x.new_zeros(x.shape[0])
        for c in self.couplings:
            x, ld = c.encode(x)
            logdet = logdet + ld
        return x, logdet

    def decode(self, z):
        if self.kind == "nice":
            return self.body.decode(z)
        for c in reversed(self.couplings):
            z = c.decode(z)
        return z

    def log_prob(self, x):
        z, logdet = self.encode(x)
        return gaussian_logp(z) + logdet

    @torch.no_grad()
    def sample(self, n, generator=None):
        return self.decode(torch.randn(n, 2, generator=generator))


def toy_data(name: str, n: int, seed: int) -> torch.Tensor:
    """Two moons (scikit-learn, noise 0.05, centred and scaled) or 8 Gaussians (radius 2, std 0.2)."""
    rng = np.random.default_rng(seed)
    if name == "moons":
        from sklearn.datasets import make_moons
        x, _ = make_moons(n, noise=0.05, random_state=seed)
        x = (x - np.array([0.5, 0.25])) * 2.0
    elif name == "8gaussians":
        angles = 2 * np.pi * rng.integers(0, 8, n) / 8
        x = 2.0 * np.stack([np.cos(angles), np.sin(angles)], 1) + 0.2 * rng.standard_normal((n, 2))
    else:
        raise ValueError(f"unknown 2-D dataset {name!r}; use moons or 8gaussians")
    return torch.tensor(x, dtype=torch.float32)


def eight_gaussians_true_nll(x: torch.Tensor) -> float:
    """Exact mean NLL of points under the 8-Gaussian mixture that generated them (the floor)."""
    ang = 2 * math.pi * torch.arange(8) / 8
    mu = 2.0 * torch.stack([torch.cos(ang), torch.sin(ang)], 1)  # (8, 2)
    d2 = ((x[:, None] - mu[None]) ** 2).sum(-1) / 0.2 ** 2  # (N, 8)
    logp = torch.logsumexp(-0.5 * d2, 1) - math.log(8) - LOG2PI - 2 * math.log(0.2)
    return float(-logp.mean())


@dataclass
class Flow2DConfig:
    dataset: str = "moons"  # moons | 8gaussians
    couplings: int = 8  # coupling layers (NICE: in pairs, as reversible blocks)
    hidden: int = 64  # hidden units of each coupling MLP
    layers: int = 3  # hidden layers of each coupling MLP
    steps: int = 1500  # Adam steps per model
    batch_size: int = 256  # points per step
    lr: float = 2e-3  # Adam learning rate (cosine-decayed)
    n_train: int = 20000  # training points drawn once
    n_test: int = 5000  # held-out points for the reported NLL
    ckpt_every: int = 0  # no checkpoints: a run takes a minute


def train_flow2d(model: Flow2D, data: torch.Tensor, steps: int, batch: int, lr: float, seed: int = 0,
                 log=None) -> Flow2D:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    sampler = StepSampler(len(data), batch, seed)
    for step in range(steps):
        loss = -model.log_prob(data[sampler.indices(step)]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % 100 == 0 or step == steps - 1):
            log(step, loss.item())
    return model


def density_figure(models: dict, data: torch.Tensor, title: str):
    import matplotlib.pyplot as plt
    lim = float(data.abs().max()) * 1.15
    g = torch.linspace(-lim, lim, 200)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    grid = torch.stack([xx.flatten(), yy.flatten()], 1)
    fig, axes = plt.subplots(1, 1 + 2 * len(models), figsize=(3.2 * (1 + 2 * len(models)), 3.2))
    axes[0].scatter(data[:2000, 0], data[:2000, 1], s=1)
    axes[0].set_title("data")
    for k, (name, m) in enumerate(models.items()):
        with torch.no_grad():
            dens = m.log_prob(grid).exp().view(200, 200)
            samp = m.sample(2000, torch.Generator().manual_seed(0))
        axes[1 + 2 * k].imshow(dens, origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis")
        axes[1 + 2 * k].set_title(f"{name} density")
        axes[2 + 2 * k].scatter(samp[:, 0], samp[:, 1], s=1, c="C1")
        axes[2 + 2 * k].set_title(f"{name} samples")
    for ax in axes:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def flow2d(cfg: Flow2DConfig, run: Run) -> dict[str, float]:
    """Fit NICE and RealNVP to a 2-D density by exact maximum likelihood; report test NLL (nats)."""
    train = toy_data(cfg.dataset, cfg.n_train, seed=1)
    test = toy_data(cfg.dataset, cfg.n_test, seed=2)
    models, result = {}, {}
    for offset, kind in enumerate(("nice", "realnvp")):
        torch.manual_seed(offset)
        m = Flow2D(kind, cfg.couplings, cfg.hidden, cfg.layers)
        run.watch(**{kind: m})
        train_flow2d(m, train, cfg.steps, cfg.batch_size, cfg.lr, seed=offset,
                     log=lambda s, v, k=kind: run.log(offset * cfg.steps + s, **{f"{k}_loss": v}))
        with torch.no_grad():
            result[f"{kind}_nll_nats"] = float(-m.log_prob(test).mean())
        models[kind.upper() if kind == "nice" else "RealNVP"] = m
    cov = torch.cov(train.T)
    result["gaussian_nll_nats"] = float(1 + LOG2PI + 0.5 * torch.logdet(cov))  # best single Gaussian
    if cfg.dataset == "8gaussians":
        result["true_nll_nats"] = eight_gaussians_true_nll(test)
    result["nll_nats"] = result["realnvp_nll_nats"]
    run.print("  ".join(f"{k}={v:.3f}" for k, v in result.items()))
    run.save_figure("density", density_figure(models, test, f"{cfg.dataset}: exact NLL (nats) "
                    f"NICE {result['nice_nll_nats']:.2f}, RealNVP {result['realnvp_nll_nats']:.2f}"))
    run.checkpoint()
    return result


_Q2D = {"steps": 150, "hidden": 32, "layers": 2, "n_train": 4000, "n_test": 2000}

recipe("flow-2d-moons", lecture=12, section="Normalizing flows (2-D densities)", config=Flow2DConfig,
       presets={"full": {"dataset": "moons"}, "quick": _Q2D},
       target=Target("nll_nats", "<=", 1.8, "ours: the data's entropy is about 1.65 nats (arcs of length "
                     "4 pi, noise std 0.1); a single Gaussian scores 3.27"))(flow2d)
recipe("flow-2d-8gaussians", lecture=12, section="Normalizing flows (2-D densities)", config=Flow2DConfig,
       presets={"full": {"dataset": "8gaussians"}, "quick": _Q2D},
       target=Target("nll_nats", "<=", 1.95, "ours: the true mixture's NLL (the floor) is 1.70 nats; "
                     "floor + 0.25"))(flow2d)


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --n 100``: points drawn from the trained RealNVP, one "x y" per line."""
    from ..engine.config import from_dict
    cfg = from_dict(Flow2DConfig, saved["config"])
    m = Flow2D("realnvp", cfg.couplings, cfg.hidden, cfg.layers)
    m.load_state_dict(load_run_weights(run_dir, "realnvp"))
    pts = m.sample(args.n, torch.Generator().manual_seed(args.seed))
    return "\n".join(f"{a:.4f} {b:.4f}" for a, b in pts.tolist())
