"""Mode collapse made visible on 2-D mixtures (Lecture 11, "Challenges ... mode collapse").

The notes: the GAN loss does not distinguish a generator that covers the data distribution from one
whose range collapses onto a few points the current discriminator handles badly. On the standard
toy problems (Metz et al. 2017; Srivastava et al. 2017) we can count it:

* ``ring8``: 8 Gaussians, std 0.02, centres on a circle of radius 2;
* ``grid25``: 25 Gaussians, std 0.05, centres on the grid {-4, -2, 0, 2, 4}^2.

A sample is **high quality** if it lies within 3 std of its nearest centre. A mode is **covered**
if it receives at least a quarter of its fair share of all samples (``n / (4 K)``) among the
high-quality ones; ``modes_any`` is the looser count of modes with a single high-quality sample
(Srivastava et al.'s definition). The mitigations the notes name are compared with the plain GAN:

* ``gan``: non-saturating GAN, MLPs, Adam;
* ``noise``: "adding noise": Gaussian noise on the discriminator's inputs (real and fake alike),
  std annealed linearly from ``noise_std`` to 0 (instance noise);
* ``diversity``: "changing the objective to encourage diversity in mini-batches": the generator also
  minimises ``lambda / mean_i(||G(z_i) - G(z_j)|| / ||z_i - z_j||)`` over pairs in the batch (the
  mode-seeking term of Mao et al. 2019);
* ``mbstd``: the discriminator sees the minibatch's feature spread (its mean standard deviation
  appended to each input), so a collapsed batch is easy to reject (Karras et al. 2018);
* ``wgan-gp``: the Wasserstein critic with gradient penalty (:mod:`dlnotes.generative.wgan`).

Both players use Adam with a cosine learning-rate decay to 0 (so the samples settle on the modes).
With ``standardize`` both work on points divided by the mixture's coordinate std (2.83 for the grid,
as Gulrajani et al.'s toy experiments scale it) and the generator's output is scaled back before it is
scored. The grid recipe uses it: on raw points every variant stayed at 4-5 of 25 modes, its samples
strung along the outer square; standardised, WGAN-GP covered 16 after 6000 steps and 25 (92% high
quality) after 12000, the grid recipe's length. The ring recipe keeps raw points (radius 2): there,
standardising cut the plain GAN from 6 to 2 covered modes.
Recipes ``mode-collapse-ring`` and ``mode-collapse-grid`` train every variant with one seed and
report the best one's ``modes_covered`` and ``high_quality_share`` plus every variant's numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..engine import Run, Target, recipe
from ..engine.run import load_run_weights
from .gan import discriminator_loss, generator_loss
from .wgan import critic_loss, gradient_penalty, wgan_generator_loss


def mixture_centres(kind: str) -> tuple[torch.Tensor, float]:
    """(K, 2) centres and the component std of ``ring8`` or ``grid25``."""
    if kind == "ring8":
        angles = torch.arange(8) * (2 * math.pi / 8)
        return 2.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.02
    if kind == "grid25":
        g = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(g, g), 0.05
    raise ValueError(f"mixture must be ring8 or grid25, not {kind!r}")


def coordinate_std(kind: str) -> float:
    """Standard deviation of one coordinate of the mixture: sqrt(mean of squared centre coordinates + std^2)."""
    centres, std = mixture_centres(kind)
    return math.sqrt(float(centres.pow(2).mean()) + std ** 2)


def sample_mixture(kind: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    centres, std = mixture_centres(kind)
    k = torch.randint(len(centres), (n,), generator=generator)
    return centres[k] + std * torch.randn(n, 2, generator=generator)  # (n, 2)


def mode_metrics(samples: torch.Tensor, kind: str) -> dict[str, float]:
    """High-quality share, modes covered (>= n/(4K) high-quality samples) and modes with any."""
    centres, std = mixture_centres(kind)
    d = torch.cdist(samples.float(), centres)  # (n, K)
    dist, nearest = d.min(1)
    hq = dist <= 3 * std
    counts = torch.bincount(nearest[hq], minlength=len(centres))
    return {"modes_covered": float((counts >= len(samples) / (4 * len(centres))).sum()),
            "modes_any": float((counts > 0).sum()), "high_quality_share": hq.float().mean().item(),
            "n_modes": float(len(centres))}


class Generator2D(nn.Module):
    def __init__(self, z_dim: int = 16, hidden: int = 128, layers: int = 3):
        super().__init__()
        dims = [z_dim] + [hidden] * layers
        mods = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*mods, nn.Linear(hidden, 2))

    def forward(self, z):
        return self.net(z)  # (B, 2)


class Discriminator2D(nn.Module):
    """MLP on points; with ``mbstd`` the batch's mean feature std is appended to the first hidden layer."""

    def __init__(self, hidden: int = 128, layers: int = 3, mbstd: bool = False):
        super().__init__()
        self.mbstd = mbstd
        self.first = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.2))
        dims = [hidden + int(mbstd)] + [hidden] * (layers - 1)
        mods = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        self.rest = nn.Sequential(*mods, nn.Linear(dims[-1], 1))

    def forward(self, x):
        h = self.first(x)  # (B, H)
        if self.mbstd:
            spread = h.std(0).mean().expand(len(h), 1)  # (B, 1): one number per batch, shared
            h = torch.cat([h, spread], 1)
        return self.rest(h).squeeze(1)  # (B,)


def diversity_term(z: torch.Tensor, x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """1 / mean_i (||x_i - x_j|| / ||z_i - z_j||), pairs (i, j = i + B/2): small when outputs spread."""
    h = len(z) // 2
    ratio = (x[:h] - x[h:2 * h]).abs().mean(1) / (z[:h] - z[h:2 * h]).abs().mean(1)
    return 1.0 / (ratio.mean() + eps)


VARIANTS = ("gan", "noise", "diversity", "mbstd", "wgan-gp")


@dataclass
class ModeConfig:
    mixture: str = "ring8"  # ring8 | grid25
    variants: str = "gan,noise,diversity,mbstd,wgan-gp"  # comma-separated configurations to compare
    z_dim: int = 16  # latent dimension
    hidden: int = 128  # MLP width (G and D)
    layers: int = 3  # hidden layers (G and D)
    batch_size: int = 256  # points per step
    steps: int = 6000  # generator updates per variant
    lr: float = 1e-3  # Adam learning rate (both players)
    lr_decay: bool = True  # cosine-decay the learning rate to 0, so the samples settle on the modes
    beta1: float = 0.5  # Adam beta1 (GANs; WGAN-GP uses 0.5 as well, beta2 0.9)
    noise_std: float = 0.3  # initial std of the input noise ("noise" variant), annealed to 0
    diversity: float = 0.5  # weight of the diversity term ("diversity" variant)
    n_critic: int = 5  # critic steps per generator step (wgan-gp)
    gp_lambda: float = 0.1  # gradient-penalty weight (wgan-gp; points live on a scale of ~2)
    n_eval: int = 2500  # generated points scored
    seed: int = 0  # data/noise seed (initialisation uses the run seed)
    standardize: bool = False  # G and D work on points divided by the mixture's coordinate std (grid: 2.83)


def train_variant(cfg: ModeConfig, variant: str, run: Run | None = None) -> tuple[nn.Module, dict[str, float]]:
    """Train one configuration; returns the generator and its mode metrics."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    G = Generator2D(cfg.z_dim, cfg.hidden, cfg.layers)
    D = Discriminator2D(cfg.hidden, cfg.layers, mbstd=variant == "mbstd")
    betas = (cfg.beta1, 0.9 if variant == "wgan-gp" else 0.999)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas)
    cosine = lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)) if cfg.lr_decay else 1.0  # noqa: E731
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, cosine) for o in (opt_g, opt_d)]
    gen = torch.Generator().manual_seed(cfg.seed)
    n_d = cfg.n_critic if variant == "wgan-gp" else 1
    scale = coordinate_std(cfg.mixture) if cfg.standardize else 1.0  # networks see points / scale
    for step in range(cfg.steps):
        for _ in range(n_d):
            real = sample_mixture(cfg.mixture, cfg.batch_size, gen) / scale  # (B, 2)
            with torch.no_grad():
                fake = G(torch.randn(cfg.batch_size, cfg.z_dim, generator=gen))
            if variant == "noise":
                s = cfg.noise_std * (1 - step / cfg.steps)
                real = real + s * torch.randn(real.shape, generator=gen)
                fake = fake + s * torch.randn(fake.shape, generator=gen)
            if variant == "wgan-gp":
                d_loss = critic_loss(D(real), D(fake)) + cfg.gp_lambda * gradient_penalty(D, real, fake)
            else:
                d_loss = discriminator_loss(D(real), D(fake))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        z = torch.randn(cfg.batch_size, cfg.z_dim, generator=gen)
        fake = G(z)
        if variant == "noise":
            fake = fake + cfg.noise_std * (1 - step / cfg.steps) * torch.randn(fake.shape, generator=gen)
        if variant == "wgan-gp":
            g_loss = wgan_generator_loss(D(fake))
        else:
            g_loss = generator_loss(D(fake), "nonsaturating")
        if variant == "diversity":
            g_loss = g_loss + cfg.diversity * diversity_term(z, fake)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        for sch in scheds:
            sch.step()
        if run is not None:
            if step % 100 == 0:
                run.log(step, **{f"d_loss_{variant}": d_loss.item(), f"g_loss_{variant}": g_loss.item()})
            else:
                run.log_check(step, **{f"d_loss_{variant}": d_loss.item(), f"g_loss_{variant}": g_loss.item()})
    with torch.no_grad():
        pts = G(torch.randn(cfg.n_eval, cfg.z_dim, generator=torch.Generator().manual_seed(12345))) * scale
    return G, {**mode_metrics(pts, cfg.mixture), "_points": pts}


def _scatter(ax, pts, centres, title):
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4)
    ax.scatter(centres[:, 0], centres[:, 1], s=25, c="red", marker="x")
    lim = float(centres.abs().max()) * 1.5
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)


def compare_variants(cfg: ModeConfig, run: Run) -> dict[str, float]:
    import matplotlib.pyplot as plt

    variants = [v.strip() for v in cfg.variants.split(",") if v.strip()]
    centres, _ = mixture_centres(cfg.mixture)
    fig, axes = plt.subplots(1, len(variants) + 1, figsize=(2.8 * (len(variants) + 1), 3))
    real = sample_mixture(cfg.mixture, cfg.n_eval, torch.Generator().manual_seed(1))
    _scatter(axes[0], real, centres, "real data")
    result, scores = {}, {}
    for ax, v in zip(axes[1:], variants):
        G, m = train_variant(cfg, v, run)
        pts = m.pop("_points")
        run.watch(**{f"G_{v}": G})
        scores[v] = m
        result.update({f"{k}_{v}": x for k, x in m.items() if k != "n_modes"})
        _scatter(ax, pts, centres, f"{v}: {m['modes_covered']:.0f}/{m['n_modes']:.0f} modes, "
                                   f"{100 * m['high_quality_share']:.0f}% HQ")
        run.print(f"{v}: " + " ".join(f"{k}={x:.3g}" for k, x in m.items()))
    run.save_figure(f"samples_{cfg.mixture}", fig)
    run.checkpoint()
    best = max(variants, key=lambda v: (scores[v]["modes_covered"], scores[v]["high_quality_share"]))
    worst = min(variants, key=lambda v: (scores[v]["modes_covered"], scores[v]["high_quality_share"]))
    run.save_text("variants.txt", "\n".join(f"{v}: {scores[v]}" for v in variants)
                  + f"\nbest: {best}\nfailing: {worst}\n")
    return {**result, "modes_covered": scores[best]["modes_covered"],
            "high_quality_share": scores[best]["high_quality_share"],
            "best_variant": variants.index(best), "failing_variant": variants.index(worst),
            "failing_modes_covered": scores[worst]["modes_covered"], "n_modes": scores[best]["n_modes"]}


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --n 2000 --out points.png``: a scatter of every variant's samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..engine.config import from_dict

    cfg = from_dict(ModeConfig, saved["config"])
    variants = [v.strip() for v in cfg.variants.split(",") if v.strip()]
    centres, _ = mixture_centres(cfg.mixture)
    # runs saved before ``standardize`` existed trained on raw points
    scale = coordinate_std(cfg.mixture) if saved["config"].get("standardize", False) else 1.0
    fig, axes = plt.subplots(1, len(variants), figsize=(2.8 * len(variants), 3), squeeze=False)
    lines = []
    for ax, v in zip(axes[0], variants):
        G = Generator2D(cfg.z_dim, cfg.hidden, cfg.layers)
        G.load_state_dict(load_run_weights(run_dir, f"G_{v}"))
        with torch.no_grad():
            pts = G(torch.randn(args.n, cfg.z_dim, generator=torch.Generator().manual_seed(args.seed))) * scale
        m = mode_metrics(pts, cfg.mixture)
        _scatter(ax, pts, centres, f"{v}: {m['modes_covered']:.0f} modes, {100 * m['high_quality_share']:.0f}% HQ")
        lines.append(f"{v}: {m}")
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "\n".join(lines + [f"wrote {out}"])


_QUICK = {"steps": 150, "n_eval": 1000, "hidden": 64, "variants": "gan,wgan-gp", "n_critic": 2}


@recipe("mode-collapse-ring", lecture=11, section="Challenges: mode collapse", config=ModeConfig,
        presets={"quick": _QUICK},
        target=Target("modes_covered", ">=", 8, "issue #7: 8/8 modes with >= 80% high-quality samples "
                                                "(VEEGAN, Srivastava et al. 2017, table 1 protocol)"))
def mode_collapse_ring(cfg: ModeConfig, run: Run) -> dict[str, float]:
    """8 Gaussians on a ring: modes covered and high-quality share of a plain GAN and its mitigations."""
    return compare_variants(cfg, run)


@recipe("mode-collapse-grid", lecture=11, section="Challenges: mode collapse", config=ModeConfig,
        presets={"full": {"mixture": "grid25", "steps": 12000, "standardize": True}, "quick": _QUICK},
        target=Target("modes_covered", ">=", 25, "all 25 modes of the grid (Srivastava et al. 2017 protocol)"))
def mode_collapse_grid(cfg: ModeConfig, run: Run) -> dict[str, float]:
    """25 Gaussians on a 5x5 grid: modes covered and high-quality share per configuration."""
    return compare_variants(cfg, run)
