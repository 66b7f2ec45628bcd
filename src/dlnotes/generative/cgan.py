"""Conditional GAN on MNIST (Lecture 11, "Conditional GANs").

The notes: "we just augment the input z with the class label c, and feed the same to the
discriminator", giving

    L(Theta, Psi) = E_{x~real} log D(x | c) + E_z log(1 - D(G(z | c))).

Here ``c`` is a one-hot vector: the generator's input is ``[z, onehot(c)]`` (B, z_dim + 10) and the
discriminator's input is the image with ten extra constant planes, plane ``c`` set to 1 (the
one-hot label concatenated to every pixel). Real pairs ``(x, c)`` are training images with their
labels; fake pairs are ``(G(z | c), c)`` with ``c`` uniform. The losses are
:func:`dlnotes.generative.gan.discriminator_loss` and the non-saturating generator loss.

Recipe ``cgan-mnist``: the share of samples that our MNIST classifier assigns to the requested
digit must be >= 95%; classifier-FID and confidence are reported too.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.images import by_name
from ..engine import Run, Target, recipe
from ..engine.plots import save_image_grid, write_grid
from ..engine.run import load_run_weights
from .gan import (adversarial_setup, discriminator_loss, generator_loss, grad_norm, make_generator,
                  score_generated, to_signed, to_unit)


@dataclass
class CGANConfig:
    dataset: str = "mnist"  # mnist | fashion_mnist
    arch: str = "dcgan"  # dcgan | mlp
    z_dim: int = 64  # latent dimension (the label adds 10 inputs)
    width: int = 32  # base channel count
    batch_size: int = 64  # real and fake pairs per step
    steps: int = 6000  # alternating D/G updates
    lr: float = 2e-4  # Adam learning rate
    beta1: float = 0.5  # Adam beta1
    n_eval: int = 10000  # samples scored (n_eval / 10 per class)
    classifier: str = "full"  # scoring classifier: full | quick
    log_every: int = 50  # steps between logs
    ckpt_every: int = 1000  # steps between checkpoints


def onehot(c: torch.Tensor) -> torch.Tensor:
    return F.one_hot(c, 10).float()  # (B, 10)


@torch.no_grad()
def generate_conditional(G, labels: torch.Tensor, z_dim: int, seed: int = 0, batch: int = 500,
                         device="cpu") -> torch.Tensor:
    """Samples in [0, 1], (N, 1, 28, 28), one per requested label, from a fixed noise seed."""
    g = torch.Generator().manual_seed(seed)
    was = G.training
    G.eval()
    out = []
    for i in range(0, len(labels), batch):
        c = labels[i:i + batch]
        z = torch.randn(len(c), z_dim, generator=g)
        out.append(to_unit(G(torch.cat([z, onehot(c)], 1).to(device)).cpu()))  # G(z | c)
    G.train(was)
    return torch.cat(out)


def train_cgan(cfg: CGANConfig, run: Run) -> dict[str, float]:
    x_all, y_all = by_name(cfg.dataset, "train")
    G, D, Gp, Dp, opt_g, opt_d, start, sampler, b, _ = adversarial_setup(cfg, run, len(x_all), extra_in=10)
    for step in run.steps(cfg.steps, unit="img", items_per_step=cfg.batch_size):
        idx = sampler.indices(step)
        real, c_real = to_signed(x_all[idx]).to(run.device), onehot(y_all[idx]).to(run.device)
        c_fake = onehot(torch.randint(10, (b,))).to(run.device)  # requested classes
        z = torch.randn(b, cfg.z_dim, device=run.device)
        with run.autocast():
            fake = Gp(torch.cat([z, c_fake], 1))  # G(z | c)
            d_loss = discriminator_loss(Dp(real, c_real).float(), Dp(fake.detach(), c_fake).float())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        with run.autocast():
            g_loss = generator_loss(Dp(fake, c_fake).float(), "nonsaturating")
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            run.log(step, d_loss=d_loss.item(), g_loss=g_loss.item(), g_grad_norm=grad_norm(G))
        else:
            run.log_check(step, d_loss=d_loss.item(), g_loss=g_loss.item())
    run.checkpoint()
    if not run.is_main:
        return {}
    labels = torch.arange(10).repeat_interleave(cfg.n_eval // 10)
    samples = generate_conditional(G, labels, cfg.z_dim, seed=0, device=run.device)
    grid_labels = torch.arange(10).repeat(8)  # 8 rows, one column per digit
    save_image_grid(run, "samples", generate_conditional(G, grid_labels, cfg.z_dim, seed=0, device=run.device),
                    nrow=10, title="conditional samples: column c requests digit c (seed 0)")
    return {**score_generated(run, samples, cfg.dataset, cfg.classifier, labels=labels), "steps": cfg.steps,
            "throughput": cfg.batch_size * (run.step - start) / max(run.elapsed, 1e-9)}


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --n 100 --out grid.png``: column c of the grid requests digit c."""
    from ..engine.config import from_dict

    cfg = from_dict(CGANConfig, saved["config"])
    G = make_generator(cfg.arch, cfg.z_dim, cfg.width, extra_in=10, hidden=getattr(cfg, "fc_hidden", 0))
    G.load_state_dict(load_run_weights(run_dir, "G"))
    labels = torch.arange(10).repeat(max(1, args.n // 10))
    out = write_grid(args.out, generate_conditional(G, labels, cfg.z_dim, seed=args.seed), nrow=10)
    return f"wrote {len(labels)} samples (column c = digit c) to {out}"


@recipe("cgan-mnist", lecture=11, section="Conditional GANs", config=CGANConfig, datasets=("mnist",),
        presets={"quick": {"steps": 30, "n_eval": 500, "classifier": "quick", "width": 8, "log_every": 10,
                           "ckpt_every": 0}},
        target=Target("sample_class_accuracy", ">=", 0.95, "issue #7 (samples classified as the requested digit)"))
def cgan_mnist(cfg: CGANConfig, run: Run) -> dict[str, float]:
    """Class-conditional DCGAN on MNIST: label one-hot concatenated to z and to D's input."""
    return train_cgan(cfg, run)
