"""Wasserstein GANs: weight clipping (WGAN) and gradient penalty (WGAN-GP) (Lecture 11, "Challenges").

The notes replace the Jensen-Shannon game by the earth-mover (Wasserstein-1) distance, with a
critic ``f = D_Psi`` that must be 1-Lipschitz:

    L^WGAN(Theta, Psi) = E_{x~real} f(x) - E_z f(G(z)),

maximised over the critic and minimised over the generator. In code both are minimised:

    critic:     E_z f(G(z)) - E_real f(x)    (+ lambda * GP for WGAN-GP)
    generator: -E_z f(G(z))

The Lipschitz constraint is imposed either by **clipping** every critic weight to ``[-c, c]`` after
each step (Arjovsky et al. 2017: RMSprop, c = 0.01, 5 critic steps per generator step), or by the
**gradient penalty** (Gulrajani et al. 2017) on points ``x_hat = eps x + (1 - eps) G(z)``,
``eps ~ U[0, 1]``, between real and fake samples:

    GP = E_{x_hat} (||grad_x f(x_hat)||_2 - 1)^2,   lambda = 10, Adam(1e-4, betas (0.5, 0.9)).

A linear critic ``f(x) = w.x + b`` with ``||w|| = 1`` has gradient norm 1 everywhere, so its penalty
is zero (tested). The GP critic must not use batch normalisation (the penalty is per sample), so it
uses layer normalisation.

Recipes: ``wgan-gp-mnist`` and ``wgan-clip-mnist`` (classifier-FID reported beside the GAN's).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.images import by_name
from ..data.sampling import StepSampler
from ..engine import Run, recipe
from ..engine.run import load_run_weights
from ..engine.plots import save_image_grid
from .gan import (generate, grad_norm, make_discriminator, make_generator, score_generated,
                  to_signed, write_generator_samples)


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """E_z f(G(z)) - E_real f(x): the negated WGAN objective, minimised by the critic."""
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None) -> torch.Tensor:
    """E (||grad f(x_hat)||_2 - 1)^2 at x_hat = eps real + (1 - eps) fake, eps ~ U[0,1] per sample."""
    if eps is None:
        eps = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)  # (B, ...)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)  # (B, ...)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


@torch.no_grad()
def clip_weights(critic: nn.Module, c: float) -> None:
    """Project every critic parameter into [-c, c] (WGAN's crude Lipschitz constraint)."""
    for p in critic.parameters():
        p.clamp_(-c, c)


@dataclass
class WGANConfig:
    dataset: str = "mnist"  # mnist | fashion_mnist | digits
    arch: str = "dcgan"  # dcgan | mlp
    lipschitz: str = "gp"  # gp (gradient penalty) | clip (weight clipping)
    z_dim: int = 64  # latent dimension
    width: int = 64  # base channel count
    batch_size: int = 64  # real and fake images per critic step
    gen_steps: int = 2000  # generator updates
    n_critic: int = 5  # critic updates per generator update
    lr: float = 1e-4  # Adam (gp) / RMSprop (clip) learning rate
    gp_lambda: float = 10.0  # gradient-penalty weight
    clip: float = 0.01  # weight-clipping bound c
    n_eval: int = 10000  # samples scored at the end
    classifier: str = "full"  # scoring classifier: full | quick
    log_every: int = 20  # generator steps between logs
    ckpt_every: int = 500  # generator steps between checkpoints


def train_wgan(cfg: WGANConfig, run: Run) -> dict[str, float]:
    x_all, _ = by_name(cfg.dataset, "train")
    G = make_generator(cfg.arch, cfg.z_dim, cfg.width).to(run.device)
    # batch statistics would couple the per-sample penalty; clipping keeps DCGAN's batch norm
    C = make_discriminator(cfg.arch, cfg.width, norm="layer" if cfg.lipschitz == "gp" else "batch").to(run.device)
    Gp, Cp = run.prepare(G), run.prepare(C)
    if cfg.lipschitz == "gp":
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        opt_c = torch.optim.Adam(C.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    elif cfg.lipschitz == "clip":
        opt_g = torch.optim.RMSprop(G.parameters(), lr=cfg.lr)
        opt_c = torch.optim.RMSprop(C.parameters(), lr=cfg.lr)
    else:
        raise ValueError(f"lipschitz must be gp or clip, not {cfg.lipschitz!r}")
    run.watch(G=G, C=C, opt_g=opt_g, opt_c=opt_c)
    start = run.restore()
    sampler = StepSampler(len(x_all), cfg.batch_size, seed=0, rank=run.rank, world_size=run.world_size)
    b = cfg.batch_size // run.world_size
    for step in run.steps(cfg.gen_steps, unit="img", items_per_step=cfg.batch_size * cfg.n_critic):
        for k in range(cfg.n_critic):
            real = to_signed(x_all[sampler.indices(step * cfg.n_critic + k)]).to(run.device)  # (B, 1, 28, 28)
            with torch.no_grad():
                fake = Gp(torch.randn(b, cfg.z_dim, device=run.device))
            c_loss = critic_loss(Cp(real), Cp(fake))
            w_dist = -c_loss.item()  # the critic's estimate of the Wasserstein distance
            if cfg.lipschitz == "gp":
                gp = gradient_penalty(Cp, real, fake)
                c_loss = c_loss + cfg.gp_lambda * gp
            opt_c.zero_grad(set_to_none=True)
            c_loss.backward()
            opt_c.step()
            if cfg.lipschitz == "clip":
                clip_weights(C, cfg.clip)
        g_loss = wgan_generator_loss(Cp(Gp(torch.randn(b, cfg.z_dim, device=run.device))))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if step % cfg.log_every == 0 or step == cfg.gen_steps - 1:
            run.log(step, critic_loss=c_loss.item(), g_loss=g_loss.item(), wasserstein_estimate=w_dist,
                    g_grad_norm=grad_norm(G))
        else:
            run.log_check(step, critic_loss=c_loss.item(), g_loss=g_loss.item())
    run.checkpoint()
    if not run.is_main:
        return {}
    samples = generate(G, cfg.n_eval, cfg.z_dim, seed=0, device=run.device)
    save_image_grid(run, "samples", samples[:64], title=f"WGAN-{cfg.lipschitz} (seed 0)")
    return {**score_generated(run, samples, cfg.dataset, cfg.classifier), "gen_steps": cfg.gen_steps,
            "throughput": cfg.batch_size * cfg.n_critic * (run.step - start) / max(run.elapsed, 1e-9)}


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --n 64 --out grid.png``."""
    from ..engine.config import from_dict

    cfg = from_dict(WGANConfig, saved["config"])
    G = make_generator(cfg.arch, cfg.z_dim, cfg.width)
    G.load_state_dict(load_run_weights(run_dir, "G"))
    return write_generator_samples(G, cfg.z_dim, args)


_QUICK = {"gen_steps": 8, "n_critic": 2, "n_eval": 500, "classifier": "quick", "width": 16, "log_every": 2,
          "ckpt_every": 0}


@recipe("wgan-gp-mnist", lecture=11, section="Challenges: Wasserstein GANs", config=WGANConfig,
        datasets=("mnist",), presets={"quick": _QUICK})
def wgan_gp_mnist(cfg: WGANConfig, run: Run) -> dict[str, float]:
    """WGAN-GP (gradient penalty, 5 critic steps per generator step) with the DCGAN networks on MNIST."""
    return train_wgan(cfg, run)


@recipe("wgan-clip-mnist", lecture=11, section="Challenges: Wasserstein GANs (weight clipping)",
        config=WGANConfig, datasets=("mnist",),
        presets={"full": {"lipschitz": "clip", "lr": 5e-5}, "quick": _QUICK})
def wgan_clip_mnist(cfg: WGANConfig, run: Run) -> dict[str, float]:
    """The original WGAN: weight clipping to [-0.01, 0.01] and RMSprop, DCGAN networks on MNIST."""
    return train_wgan(cfg, run)
