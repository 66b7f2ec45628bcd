"""The saturation problem of the original generator loss (Lecture 11, "Challenges: the saturation problem").

Early in training the discriminator rejects every sample, ``D(G(z)) ~ 0``, where the saturating loss
``log(1 - D(G(z)))`` is flat and the non-saturating ``-log D(G(z))`` is steep (both in
:mod:`dlnotes.generative.gan`). ``gan-saturation`` trains the MLP generator of that module with each
loss from one initialisation: ``d_warmup`` discriminator-only steps first bring D to that state, then
both runs take generator steps from the same G, D and noise, and the recipe reports their gradient
norms, how fast each lifts ``D(G(z))`` and the quality of their samples.

After 300 discriminator-only steps D(G(z)) = 0.0009, and at that same state the saturating loss
gives G a gradient of norm 0.0088 against 10.7 for the non-saturating one, 1216x smaller (the notes'
"not enough signal"). Adam divides each step by a running gradient scale, so the saturating generator
here still lifts D(G(z)) to 0.1 within 8 steps (non-saturating: 10): a rescaling optimizer hides much of
the lost signal, which an SGD step proportional to the gradient would not.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.images import by_name
from ..data.sampling import StepSampler
from ..engine import Run, Target, recipe
from ..engine.plots import save_image_grid
from ..engine.run import load_run_weights
from .gan import (MLPDiscriminator, MLPGenerator, discriminator_loss, generate, generator_loss, grad_norm,
                  score_generated, to_signed, write_generator_samples)


@dataclass
class SaturationConfig:
    dataset: str = "mnist"  # training images
    z_dim: int = 64  # latent dimension
    width: int = 32  # MLP width unit (hidden 128, 256)
    batch_size: int = 64  # images per step
    steps: int = 1500  # updates per generator loss
    lr: float = 2e-4  # Adam learning rate
    beta1: float = 0.5  # Adam beta1
    d_warmup: int = 300  # discriminator-only steps first, so D(G(z)) ~ 0 as "in the beginning of training"
    early_steps: int = 20  # generator steps in the early window whose mean gradient norms are reported
    n_eval: int = 2000  # samples scored per loss
    classifier: str = "full"  # scoring classifier
    log_every: int = 10  # steps between logged gradient norms


def mlp_players(cfg: SaturationConfig) -> tuple[MLPGenerator, MLPDiscriminator]:
    """The study's generator (hidden widths 4w, 8w) and discriminator (8w, 4w) for width unit w."""
    return (MLPGenerator(cfg.z_dim, hidden=(4 * cfg.width, 8 * cfg.width)),
            MLPDiscriminator(28 * 28, hidden=(8 * cfg.width, 4 * cfg.width)))


@recipe("gan-saturation", lecture=11, section="Challenges: the saturation problem", config=SaturationConfig,
        datasets=("mnist",), presets={"quick": {"steps": 40, "d_warmup": 10, "early_steps": 5, "n_eval": 300,
                                                  "classifier": "quick", "width": 8}},
        target=Target("start_grad_ratio", ">=", 10.0,
                      "notes: log(1 - D) is flat at D ~ 0 (ratio of non-saturating to saturating generator "
                      "gradient norms at the same start state)"))
def gan_saturation(cfg: SaturationConfig, run: Run) -> dict[str, float]:
    """Saturating vs non-saturating generator loss from one initialisation: gradient norms and samples."""
    import matplotlib.pyplot as plt

    x_all, _ = by_name(cfg.dataset, "train")
    sampler = StepSampler(len(x_all), cfg.batch_size, seed=0)
    torch.manual_seed(0)
    G0, D0 = mlp_players(cfg)
    curves, result = {}, {}
    for kind in ("saturating", "nonsaturating"):
        G, D = mlp_players(cfg)
        G.load_state_dict(G0.state_dict())
        D.load_state_dict(D0.state_dict())
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        gen = torch.Generator().manual_seed(1)
        steps, norms, dfake = [], [], []
        for step in range(cfg.d_warmup + cfg.steps):
            real = to_signed(x_all[sampler.indices(step)])
            z = torch.randn(cfg.batch_size, cfg.z_dim, generator=gen)
            fake = G(z)
            d_loss = discriminator_loss(D(real), D(fake.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            if step < cfg.d_warmup:
                continue
            logits = D(fake)
            g_loss = generator_loss(logits, kind)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            gn = grad_norm(G)
            opt_g.step()
            run.log_check(step, **{f"g_loss_{kind}": g_loss.item(), f"d_loss_{kind}": d_loss.item()})
            steps.append(step - cfg.d_warmup)
            norms.append(gn)
            dfake.append(torch.sigmoid(logits).mean().item())
            if step % cfg.log_every == 0:
                run.log(step - cfg.d_warmup, **{f"g_grad_norm_{kind}": gn, f"d_fake_{kind}": dfake[-1]})
        curves[kind] = (steps, norms, dfake)
        run.watch(**{f"G_{kind}": G})
        samples = generate(G, cfg.n_eval, cfg.z_dim, seed=0)
        save_image_grid(run, f"samples_{kind}", samples[:64], title=f"{kind} loss (seed 0)")
        s = score_generated(run, samples, cfg.dataset, cfg.classifier)
        result.update({f"{k}_{kind}": v for k, v in s.items() if not k.startswith("floor")})
        k = max(1, min(cfg.early_steps, len(norms)))  # the first generator steps (both leave D ~ 0 within ~10)
        result[f"early_grad_norm_{kind}"] = sum(norms[:k]) / k
        result[f"early_d_fake_{kind}"] = sum(dfake[:k]) / k  # how far each loss got out of D ~ 0 in that window
        result[f"first_grad_norm_{kind}"] = norms[0]  # the same G, D and z for both losses (same seeds)
        result[f"first_d_fake_{kind}"] = dfake[0]
        # generator steps until mean D(G(z)) first reaches 0.1: how long each loss stays stuck
        result[f"steps_to_d_fake_0.1_{kind}"] = next((s for s, d in zip(steps, dfake) if d >= 0.1), len(steps))
    run.checkpoint()

    def ratio(when: str) -> float:  # non-saturating over saturating generator gradient norm
        return result[f"{when}_grad_norm_nonsaturating"] / max(result[f"{when}_grad_norm_saturating"], 1e-12)

    result["start_grad_ratio"], result["early_grad_ratio"] = ratio("first"), ratio("early")
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.4))
    d = torch.linspace(1e-3, 1 - 1e-3, 200)
    ax[0].plot(d, torch.log(1 - d), label="saturating: log(1 - D(G(z)))")
    ax[0].plot(d, -torch.log(d), label="non-saturating: -log D(G(z))")
    ax[0].set_xlabel("D(G(z))")
    ax[0].set_title("generator losses (minimised by G)")
    ax[0].legend(fontsize=8)
    for kind, (st, nm, df) in curves.items():
        ax[1].semilogy(st, nm, label=kind)
        ax[2].plot(st, df, label=kind)
    ax[1].set_title("generator gradient norm")
    ax[2].set_title("mean D(G(z))")
    for a in ax[1:]:
        a.set_xlabel("generator step")
        a.legend(fontsize=8)
    run.save_figure("saturation", fig)
    return result


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR``: samples of the generator trained with the non-saturating loss."""
    from ..engine.config import from_dict

    cfg = from_dict(SaturationConfig, saved["config"])
    G, _ = mlp_players(cfg)
    G.load_state_dict(load_run_weights(run_dir, "G_nonsaturating"))
    return write_generator_samples(G, cfg.z_dim, args)
