"""Generative adversarial networks (Lecture 11, "Mathematics of GANs").

A generator ``G_Theta(z)``, ``z ~ Normal(0, I)``, and a discriminator ``D_Psi(x)`` (the probability
that ``x`` is real) play the game

    max_Theta min_Psi  L(Theta, Psi) = - E_{x~real} log D(x) - E_z log(1 - D(G(z))).

For the discriminator this is the cross-entropy with labels ``y = 1`` (real) and ``y = 0`` (fake),
``L(Psi) = -y log D(x) - (1 - y) log(1 - D(x))``. Training alternates an Adam step on ``Psi``
(descent on ``L``) with one on ``Theta`` (ascent on ``L``, i.e. descent on ``E log(1 - D(G(z)))``):
gradient descent-ascent. The generator's term comes in the two forms the notes compare:

* saturating:      minimise ``E_z log(1 - D(G(z)))``  (flat when ``D(G(z)) ~ 0``: early on the
  generator gets almost no gradient, the *saturation problem*);
* non-saturating:  minimise ``-E_z log D(G(z))``      (steep when ``D(G(z)) ~ 0``).

``D`` outputs a logit ``l``; ``log D = logsigmoid(l)`` and ``log(1 - D) = logsigmoid(-l)`` keep the
losses finite. Generators are an MLP or the DCGAN-style convnet of :mod:`dlnotes.nn.convnets`.

With ``ema > 0`` samples come from an exponential moving average of the generator's weights,
``Theta_ema <- ema Theta_ema + (1 - ema) Theta`` after every generator step (:mod:`dlnotes.nn.ema`;
Yazici et al. 2019): the averaged generator is not part of the game, it smooths the oscillation of
gradient descent-ascent around the equilibrium. Its batch-norm statistics are re-measured on fresh
noise before it samples (:func:`dlnotes.nn.ema.standing_batchnorm_stats`): averaged running
statistics do not fit averaged weights.

Options beside ``GANConfig``'s DCGAN defaults (batch norm in both players, constant learning rate):

* ``r1 = gamma > 0`` adds the R1 penalty ``gamma/2 E_{x~real} ||grad_x l(x)||^2`` on the
  discriminator's logit ``l`` at real images to its loss (Mescheder et al. 2018): it pushes D's
  gradient to zero on the data, damping the oscillation of descent-ascent near the equilibrium;
  ``r1_every = k`` applies it lazily (Karras et al. 2020, StyleGAN2): on every k-th D step only,
  weighted k times, which keeps its mean pull and saves most of the cost of its double backward;
* ``d_norm="spectral"`` divides each discriminator weight by its largest singular value (Miyato et
  al. 2018) instead of batch-normalising; ``"none"`` leaves D unnormalised;
* ``lr_d`` gives D its own learning rate (two time-scales, Heusel et al. 2017);
  ``lr_schedule="cosine"`` decays both rates to zero; ``fc_hidden`` adds InfoGAN's fully connected
  layer to both players; ``bn_stats="standing"`` samples G with batch-norm statistics re-measured
  on fresh noise instead of its running ones.

``gan-mnist-dcgan`` uses R1 (gamma 1, lazily on every 16th D step) with no norm in D, Adam at 3e-4 with
beta1 = 0. On this CPU (15000 steps) lazy R1 gave 0.911 / 47 in 52 minutes, R1 on every step 0.910 / 49
in 69 minutes (the double backward cost 17% of the throughput). On MNIST (15000
steps, H200 screens; classifier confidence / classifier-FID) spectral norm gave 0.885 / 107, R1
0.896 / 72 (gamma 3: 0.896 / 68, 10: 0.894 / 73), R1 with lr 3e-4 0.904 / 54 (second seed 0.903 / 58),
and with beta1 = 0 0.909 / 54 (lr 4e-4: 0.906 / 50; batches of 128: 0.905 / 55, of 32: 0.883 / 93);
beside spectral norm, two time-scales (G 1e-4, D 4e-4) gave 0.864 / 151 and standing statistics
0.882 / 105.
Earlier screens: spectral norm lowered FID from 184 to 105 over batch norm at the same confidence;
the cosine decay raised FID; 1024-wide fc layers collapsed to one digit.

Recipes: ``gan-mnist-dcgan`` (non-saturating DCGAN: classifier-FID, confidence >= 0.9, label
entropy near log 10), ``gan-mnist-dcgan-saturating`` and ``gan-mnist-mlp`` beside it, and
``gan-saturation`` (:mod:`dlnotes.generative.gan_saturation`: both generator losses from one
initialisation).
This module also holds the sampling and scoring helpers the other generative recipes share.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..data import available
from ..data.images import by_name
from ..data.sampling import StepSampler
from ..engine import ConfigError, Run, Target, recipe
from ..engine.run import load_run_weights
from ..engine.schedules import set_lr, warmup_cosine
from ..engine.plots import save_image_grid, write_grid
from ..nn.convnets import ConvDecoder, ConvEncoder
from ..nn.ema import EMA, standing_batchnorm_stats

# ----------------------------------------------------------------------------- shared helpers


def to_signed(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [-1, 1] (the range of a tanh generator)."""
    return x_u8[:, None].float() / 127.5 - 1.0


def to_unit(x_signed: torch.Tensor) -> torch.Tensor:
    return ((x_signed.float() + 1) / 2).clamp(0, 1)






def score_generated(run: Run, samples01: torch.Tensor, dataset: str, classifier: str,
                    labels: torch.Tensor | None = None) -> dict[str, float]:
    """Sample-quality scores plus the real-data floor (scores of ``dataset``'s test set)."""
    from ..eval import sample_quality as SQ

    if dataset not in SQ.LOADERS or not available(dataset):
        return {}
    s = SQ.score_samples(samples01, dataset, labels=labels, classifier=classifier)
    floor = SQ.real_floor(dataset, classifier)
    s.update({"floor_fid": floor["classifier_fid"], "floor_confidence": floor["sample_confidence"],
              "floor_label_entropy": floor["label_entropy"]})
    run.print("sample quality: " + " ".join(f"{k}={v:.4g}" for k, v in s.items()))
    return s


def grad_norm(module: nn.Module) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in module.parameters() if p.grad is not None))


# ----------------------------------------------------------------------------- the losses


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L(Psi) = -E_real log D(x) - E_z log(1 - D(G(z))): cross-entropy with y=1 real, y=0 fake."""
    return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E_real ||grad_x D(x)||^2: the squared gradient of D's logit at the real images ``real`` (which
    must require grad and have produced ``real_logits``); differentiable, for D's loss."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)  # (B, ...)
    return grad.flatten(1).pow(2).sum(1).mean()


def r1_weight(cfg, step: int) -> float:
    """The R1 penalty's weight in D's loss at ``step``: ``gamma/2`` every step, or lazily (``r1_every = k``)
    ``k gamma/2`` on every k-th step and 0 between, the same mean pull for 1/k of the double backward."""
    k = getattr(cfg, "r1_every", 1)
    return cfg.r1 * k / 2 if cfg.r1 > 0 and step % k == 0 else 0.0


def generator_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """saturating: E log(1 - D(G(z)));  non-saturating: -E log D(G(z)). Both minimised by G."""
    if kind == "saturating":
        return F.logsigmoid(-fake_logits).mean()
    if kind == "nonsaturating":
        return -F.logsigmoid(fake_logits).mean()
    raise ValueError(f"generator loss must be saturating or nonsaturating, not {kind!r}")


# ----------------------------------------------------------------------------- the networks


class MLPGenerator(nn.Module):
    """z (B, z_dim) -> x (B, *shape): Linear-ReLU stack, tanh output for images, linear for points."""

    def __init__(self, z_dim: int, out_shape=(1, 28, 28), hidden=(256, 512), out_act: str = "tanh"):
        super().__init__()
        self.out_shape = tuple(out_shape)
        dims = [z_dim, *hidden]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], math.prod(self.out_shape)))
        if out_act == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), *self.out_shape)


class MLPDiscriminator(nn.Module):
    """x (B, *shape) [+ extra (B, K)] -> logit (B,): Linear-LeakyReLU stack."""

    def __init__(self, in_dim: int, hidden=(512, 256), extra_in: int = 0):
        super().__init__()
        dims = [in_dim + extra_in, *hidden]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(dims[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if extra is not None:
            h = torch.cat([h, extra], dim=1)
        return self.net(h).squeeze(1)


class ConvDiscriminator(nn.Module):
    """DCGAN-style discriminator: ConvEncoder to a single logit (B,).

    ``norm="spectral"`` divides every weight by its largest singular value (power iteration; Miyato et
    al. 2018) instead of normalising activations, which bounds the discriminator's Lipschitz constant."""

    def __init__(self, width: int = 64, norm: str = "batch", extra_in: int = 0, hidden: int = 0):
        super().__init__()
        spectral = norm == "spectral"
        self.enc = ConvEncoder(1, (width, 2 * width), norm="none" if spectral else norm, extra_in=extra_in,
                               hidden=hidden)
        if spectral:
            for m in self.enc.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.enc(x, extra).squeeze(1)


def make_generator(arch: str, z_dim: int, width: int, extra_in: int = 0, hidden: int = 0) -> nn.Module:
    if arch == "dcgan":
        return ConvDecoder(z_dim + extra_in, (2 * width, width), norm="batch", out_act="tanh", hidden=hidden)
    if arch == "mlp":
        return MLPGenerator(z_dim + extra_in, hidden=(4 * width, 8 * width))
    raise ValueError(f"arch must be dcgan or mlp, not {arch!r}")


def make_discriminator(arch: str, width: int, norm: str = "batch", extra_in: int = 0, hidden: int = 0) -> nn.Module:
    if arch == "dcgan":
        return ConvDiscriminator(width, norm, extra_in, hidden)
    if arch == "mlp":
        return MLPDiscriminator(28 * 28, hidden=(8 * width, 4 * width), extra_in=extra_in)
    raise ValueError(f"arch must be dcgan or mlp, not {arch!r}")


def ema_sampler(G_ema: nn.Module, z_dim: int, device="cpu", batches: int = 20, batch: int = 500) -> nn.Module:
    """The EMA generator with batch-norm statistics measured on ``batches`` x ``batch`` fresh noise
    vectors (seeded, so a run and ``dlnotes sample`` agree)."""
    g = torch.Generator().manual_seed(12345)
    return standing_batchnorm_stats(G_ema, lambda i: torch.randn(batch, z_dim, generator=g).to(device), batches)


def sampling_generator(cfg, G: nn.Module, G_ema: nn.Module | None, device="cpu") -> nn.Module:
    """The generator a run samples from: the EMA one (statistics re-measured), else G with its running
    batch-norm statistics, or with standing ones measured on a copy (``cfg.bn_stats="standing"``)."""
    if G_ema is not None:
        return ema_sampler(G_ema, cfg.z_dim, device)
    if getattr(cfg, "bn_stats", "running") == "standing":
        return ema_sampler(copy.deepcopy(G), cfg.z_dim, device)
    return G


@torch.no_grad()
def generate(G: nn.Module, n: int, z_dim: int, seed: int = 0, batch: int = 500, device="cpu") -> torch.Tensor:
    """n samples in [0, 1], (n, 1, 28, 28), from a fixed noise seed."""
    g = torch.Generator().manual_seed(seed)
    was = G.training
    G.eval()
    out = [to_unit(G(torch.randn(min(batch, n - i), z_dim, generator=g).to(device)).cpu())
           for i in range(0, n, batch)]
    G.train(was)
    return torch.cat(out)


# ----------------------------------------------------------------------------- training


@dataclass
class GANConfig:
    dataset: str = "mnist"  # mnist | fashion_mnist | digits (sklearn 8x8 upsampled)
    arch: str = "dcgan"  # dcgan (convnets) | mlp
    loss: str = "nonsaturating"  # generator loss: nonsaturating (-log D(G(z))) | saturating (log(1-D(G(z))))
    z_dim: int = 64  # latent dimension
    width: int = 64  # base channel count (dcgan) / hidden-width unit (mlp)
    batch_size: int = 64  # real and fake images per step
    steps: int = 15000  # alternating D/G updates (16 epochs at 64; 4000 gave confidence 0.86, FID 316)
    lr: float = 2e-4  # Adam learning rate, both players
    lr_d: float = 0.0  # discriminator's own Adam rate (0: lr); two time-scales (TTUR, Heusel et al. 2017)
    r1: float = 0.0  # gamma of the R1 penalty gamma/2 E_real ||grad_x D(x)||^2 on D's logit (Mescheder et al. 2018)
    r1_every: int = 1  # lazy R1: the penalty on every k-th D step only, weighted k x (Karras et al. 2020)
    bn_stats: Literal["running", "standing"] = "running"  # G's batch-norm statistics when sampling
    beta1: float = 0.5  # Adam beta1 (DCGAN's setting)
    ema: float = 0.0  # decay of a moving average of G's weights to sample from (0: sample G itself)
    d_norm: Literal["batch", "layer", "spectral", "none"] = "batch"  # normalisation in the discriminator
    fc_hidden: int = 0  # dcgan: a fully connected layer of this width in G and D (InfoGAN's networks: 1024)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: both players' rates decay to 0 at the last step
    n_eval: int = 10000  # samples scored by the classifier at the end
    classifier: str = "full"  # scoring classifier: full | quick (smoke tests)
    log_every: int = 50  # steps between logged losses / gradient norms
    ckpt_every: int = 1000  # steps between checkpoints

    def check(self):
        if self.r1 < 0:
            raise ConfigError(f"r1: {self.r1}; the R1 penalty's gamma is 0 (off) or positive (Mescheder et al.: 10; "
                              f"gan-mnist-dcgan: 1)")
        if self.lr_d < 0:
            raise ConfigError(f"lr_d: {self.lr_d}; the discriminator's learning rate is 0 (the same as lr) or positive")
        if self.r1_every < 1:
            raise ConfigError(f"r1_every: {self.r1_every}; the R1 penalty is applied every k >= 1 discriminator steps "
                              f"(1: every step; StyleGAN2: 16)")


def adversarial_setup(cfg, run: Run, n_train: int, extra_in: int = 0):
    """The two players of a (conditional) GAN recipe and their Adam optimisers (betas (beta1, 0.999)),
    watched and restored, with the step sampler over ``n_train`` images and the per-rank batch.
    Returns ``(G, D, Gp, Dp, opt_g, opt_d, start, sampler, b, ema)``; ``Gp, Dp`` are the DDP-wrapped ones,
    ``ema`` the moving average of G's weights (watched as ``G_ema``) when ``cfg.ema`` > 0, else None."""
    hidden = getattr(cfg, "fc_hidden", 0)
    G = make_generator(cfg.arch, cfg.z_dim, cfg.width, extra_in=extra_in, hidden=hidden).to(run.device)
    D = make_discriminator(cfg.arch, cfg.width, getattr(cfg, "d_norm", "batch"), extra_in, hidden).to(run.device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=getattr(cfg, "lr_d", 0.0) or cfg.lr, betas=(cfg.beta1, 0.999))
    ema = EMA(G, cfg.ema) if getattr(cfg, "ema", 0.0) > 0 else None
    run.watch(G=G, D=D, opt_g=opt_g, opt_d=opt_d, **({"G_ema": ema.model} if ema else {}))
    start = run.restore()
    sampler = StepSampler(n_train, cfg.batch_size, seed=0, rank=run.rank, world_size=run.world_size)
    return G, D, run.prepare(G), run.prepare(D), opt_g, opt_d, start, sampler, cfg.batch_size // run.world_size, ema


def train_gan(cfg: GANConfig, run: Run) -> dict[str, float]:
    """Alternating Adam steps on D (cross-entropy, real=1, fake=0) and G (cfg.loss)."""
    x_all, _ = by_name(cfg.dataset, "train")
    G, D, Gp, Dp, opt_g, opt_d, start, sampler, b, ema = adversarial_setup(cfg, run, len(x_all))
    n_g, n_d = (sum(p.numel() for p in net.parameters()) / 1e6 for net in (G, D))
    run.print(f"G {n_g:.2f}M, D {n_d:.2f}M parameters; {cfg.steps} steps of {cfg.batch_size}")
    for step in run.steps(cfg.steps, unit="img", items_per_step=cfg.batch_size):
        real = to_signed(x_all[sampler.indices(step)]).to(run.device)  # (B, 1, 28, 28)
        z = torch.randn(b, cfg.z_dim, device=run.device)
        if cfg.lr_schedule == "cosine":
            for opt, lr in ((opt_g, cfg.lr), (opt_d, cfg.lr_d or cfg.lr)):
                set_lr(opt, warmup_cosine(step, cfg.steps, lr))
        # discriminator: descend the cross-entropy with real -> 1, fake -> 0 (+ the R1 penalty)
        r1_w = r1_weight(cfg, step)
        if r1_w:
            real.requires_grad_(True)
        with run.autocast():
            fake = Gp(z)
            real_logits = Dp(real).float()
            d_loss = discriminator_loss(real_logits, Dp(fake.detach()).float())
        if r1_w:
            d_loss = d_loss + r1_w * r1_penalty(real_logits, real)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # generator: the saturating or non-saturating form of its term
        with run.autocast():
            fake_logits = Dp(fake).float()
            g_loss = generator_loss(fake_logits, cfg.loss)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if ema is not None:
            ema.update(G)
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            run.log(step, d_loss=d_loss.item(), g_loss=g_loss.item(), g_grad_norm=grad_norm(G),
                    d_fake=torch.sigmoid(fake_logits).mean().item(), lr=opt_g.param_groups[0]["lr"])
        else:
            run.log_check(step, d_loss=d_loss.item(), g_loss=g_loss.item())
    run.checkpoint()
    if not run.is_main:
        return {}
    sampler_G = sampling_generator(cfg, G, ema.model if ema is not None else None, run.device)
    samples = generate(sampler_G, cfg.n_eval, cfg.z_dim, seed=0, device=run.device)
    save_image_grid(run, "samples", samples[:64], title=f"{cfg.arch} GAN, {cfg.loss} loss (seed 0"
                    f"{', EMA generator' if ema is not None else ''})")
    return {**score_generated(run, samples, cfg.dataset, cfg.classifier), "steps": cfg.steps,
            "throughput": cfg.batch_size * (run.step - start) / max(run.elapsed, 1e-9)}


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --n 64 --out grid.png``: a grid of fresh samples (seed ``--seed``)."""
    from ..engine.config import from_dict

    cfg = from_dict(GANConfig, saved["config"])
    G = make_generator(cfg.arch, cfg.z_dim, cfg.width, hidden=cfg.fc_hidden)
    G.load_state_dict(load_run_weights(run_dir, "G_ema" if cfg.ema > 0 else "G"))
    G = sampling_generator(cfg, G, G if cfg.ema > 0 else None)
    return write_generator_samples(G, cfg.z_dim, args)


def write_generator_samples(G: nn.Module, z_dim: int, args) -> str:
    """``args.n`` samples of ``G`` (noise seed ``args.seed``) as one grid at ``args.out``."""
    out = write_grid(args.out, generate(G, args.n, z_dim, seed=args.seed))
    return f"wrote {args.n} samples to {out}"


_QUICK = {"steps": 30, "n_eval": 500, "classifier": "quick", "width": 16, "log_every": 10, "ckpt_every": 0}

GAN_TARGET = Target("sample_confidence", ">=", 0.9, "issue #7 (classifier confidence of a working MNIST GAN)")


# The DCGAN recipe: R1 (gamma 1, on every 16th D step) and no norm in D, Adam 3e-4 with beta1 0 (the screens are
# in the module docstring). The saturating and MLP comparisons keep the batch-norm baseline.
_DCGAN = {"d_norm": "none", "r1": 1.0, "r1_every": 16, "lr": 3e-4, "beta1": 0.0}


@recipe("gan-mnist-dcgan", lecture=11, section="Mathematics of GANs; challenges (saturation)", config=GANConfig,
        datasets=("mnist",), presets={"full": _DCGAN, "quick": {**_QUICK, **_DCGAN}}, target=GAN_TARGET)
def gan_mnist_dcgan(cfg: GANConfig, run: Run) -> dict[str, float]:
    """DCGAN-style GAN on MNIST with the non-saturating generator loss: classifier-FID, confidence, entropy."""
    return train_gan(cfg, run)


@recipe("gan-mnist-dcgan-saturating", lecture=11, section="Challenges: the saturation problem",
        config=GANConfig, datasets=("mnist",), presets={"full": {"loss": "saturating", "steps": 4000}, "quick": _QUICK})
def gan_mnist_dcgan_saturating(cfg: GANConfig, run: Run) -> dict[str, float]:
    """The same DCGAN trained with the saturating loss log(1 - D(G(z))), for comparison."""
    return train_gan(cfg, run)


@recipe("gan-mnist-mlp", lecture=11, section="Mathematics of GANs", config=GANConfig, datasets=("mnist",),
        presets={"full": {"arch": "mlp", "steps": 10000}, "quick": _QUICK})
def gan_mnist_mlp(cfg: GANConfig, run: Run) -> dict[str, float]:
    """MLP generator and discriminator on MNIST, non-saturating loss."""
    return train_gan(cfg, run)
