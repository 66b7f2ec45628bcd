"""Latent diffusion (Lecture 12, "Diffusion in Latent Space").

The notes: instead of adding and removing noise in pixel space, embed images with an autoencoder,
run the diffusion process on the embeddings, and decode the final ``x_0'`` back to pixels. Here:

1. train an autoencoder (encoder ``g_phi``, decoder ``f_theta``, reconstruction loss
   ``||x - f(g(x))||^2``). By default (``latent=spatial``) it is fully convolutional: two stride-2
   convolutions take a 28x28 image to a 4x7x7 code that keeps the image's layout (the 4x
   downsampling of Rombach et al.'s f=4 autoencoders), and transposed convolutions map it back.
   ``latent=dense`` uses :mod:`dlnotes.generative.autoencoder`'s convolutional autoencoder instead,
   whose encoder ends in a dense layer: its ``latent_dim`` code is reshaped to a grid (64 = 4x4x4)
   that has no spatial meaning, and the U-Net then acts as a generic denoiser over it;
2. centre each code dimension and divide all of them by one scale, so the codes have unit variance on
   average (the DDPM schedule assumes data of unit scale; Rombach et al. also use one scale factor).
   ``code_scale=dim`` divides each dimension by its own std instead, which blows the jitter of
   near-constant positions (an MNIST image's empty border: std 0.02 against up to 1.7 elsewhere) up to
   unit variance; at 12 epochs on the Intel CPU that gave classifier-FID 72.9 (``--amp bf16``) against
   51.5 with one scale (fp32);
3. train DDPM (:mod:`dlnotes.generative.diffusion`, same loss and schedule) on the codes;
4. sample codes (ancestral or DDIM), undo the standardisation, decode to images.

The speed-up over pixel space is measured in the same run by timing training steps of the pixel recipe's U-Net at
the same batch. Training uses ``ddpm-mnist``'s full-preset settings (Adam 1e-3, no dropout, Min-SNR-5 weights, the
rate decayed over the last quarter of the steps; ``DDPM_TRAIN``) for 4x its epochs, 64 against 16: a latent step
costs a fifth to a sixth of a pixel one, so the two recipes train for about the same time. On the AMD CPU (fp32, 2
threads, alone): classifier-FID 21.5 against pixel DDPM's 14.5 on the same seeds (1.48x), at 5.9x pixel speed per
step; 68 min of training (pixel's 16 epochs: 67 min, Intel CPU, compiled, bf16), 75 in all. Two more draws of 1000
samples: 19.6 and 21.3 (pixel: 17.9 and 14.9), so 20.8 over three against pixel's 15.8, 1.32x. Before, 48 epochs at
a constant rate (Intel CPU): 23.0 on the recipe's seeds (1.59x) and 18.8 on the second draw, 20.9 over the two: the
decayed rate moved the recipe's draw, not the mean; DDIM-50 went from 35.4 to 26.5. At 12 epochs: 51.5.
``pixel_run`` names a finished ``ddpm-mnist`` run whose classifier-FID the result is divided by
(``fid_ratio_to_pixel``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..data.sampling import StepSampler
from ..engine import Run, Target, recipe
from ..engine.config import ConfigError
from ..engine.run import load_run_weights
from ..engine.plots import write_grid
from ..engine.schedules import set_lr, warmup_cosine
from ..nn.convnets import conv_block
from .autoencoder import ConvAutoencoder, reconstruction_loss
from .diffusion import (DDPM_TRAIN, DDPMConfig, DDPMSchedule, build_unet, grade, sample_batched, sampling_eps_fn,
                        train_eps_model)


@dataclass
class LatentDiffusionConfig(DDPMConfig):
    latent: Literal["spatial", "dense"] = "spatial"  # convolutional 4x7x7 code | dense code viewed as a grid
    latent_shape: list[int] = field(default_factory=lambda: [4, 7, 7])  # (C, h, w) of the code grid
    latent_dim: int = 64  # latent=dense: code size (= C*h*w of latent_shape, e.g. [4, 4, 4])
    ae_width: int = 32  # autoencoder base channels
    ae_epochs: float = 5.0  # autoencoder training passes
    ae_lr: float = 2e-3  # autoencoder Adam learning rate
    code_scale: Literal["global", "dim"] = "global"  # centre each code dimension, then one scale for all | each its own
    train_limit: int = 0  # use the first N training images (0: all)
    mults: list[int] = field(default_factory=lambda: [1, 2])  # U-Net levels: 7x7, 4x4
    attn_levels: list[int] = field(default_factory=lambda: [1])  # self-attention at 4x4
    base: int = 48  # U-Net base channels
    pixel_timing_steps: int = 3  # pixel-space U-Net steps timed for the speed-up (0: skip)
    pixel_run: str = ""  # a finished ddpm-mnist run directory: its classifier-FID is the reference ("": none)

    def check(self):
        super().check()
        shape = list(self.latent_shape)
        if self.latent == "spatial" and (len(shape) != 3 or shape[1:] != [7, 7]):
            raise ConfigError(f"latent_shape: {shape}; the spatial autoencoder's code is [C, 7, 7] (e.g. [4, 7, 7])")
        if self.latent == "dense" and (len(shape) != 3 or math.prod(shape) != self.latent_dim):
            raise ConfigError(f"latent_shape: {shape} must be [C, h, w] with C*h*w = latent_dim = "
                              f"{self.latent_dim} for latent=dense (e.g. [4, 4, 4] for 64)")
        if self.pixel_run:
            pixel_fid(self.pixel_run)  # fails here, before a run directory is made


def pixel_fid(run_dir: str) -> float:
    """The classifier-FID in a finished pixel ``ddpm-mnist`` run's ``result.json``."""
    import json

    f = Path(run_dir) / "result.json"
    try:
        return float(json.loads(f.read_text())["classifier_fid"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"pixel_run: {f} holds no classifier_fid ({type(e).__name__}: {e}); give the directory "
                          "of a finished ddpm-mnist run, or leave pixel_run empty") from None


class SpatialAutoencoder(nn.Module):
    """(B, 1, 28, 28) -> (B, C, 7, 7) -> (B, 1, 28, 28), convolutions only: each code position
    describes its own 4x4 patch of the image (plus context from the receptive field)."""

    def __init__(self, channels: int = 4, width: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(
            conv_block(1, width, 4, 2, "none", "relu"),  # (B, w, 14, 14)
            conv_block(width, 2 * width, 4, 2, "batch", "relu"),  # (B, 2w, 7, 7)
            nn.Conv2d(2 * width, channels, 3, padding=1))  # (B, C, 7, 7), no squashing
        self.decoder = nn.Sequential(
            conv_block(channels, 2 * width, 3, 1, "batch", "relu"),  # (B, 2w, 7, 7)
            conv_block(2 * width, width, 4, 2, "batch", "relu", transpose=True),  # (B, w, 14, 14)
            nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Sigmoid())  # (B, 1, 28, 28) in [0, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def make_autoencoder(cfg: LatentDiffusionConfig) -> nn.Module:
    if cfg.latent == "spatial":
        return SpatialAutoencoder(cfg.latent_shape[0], cfg.ae_width)
    return ConvAutoencoder(cfg.latent_dim, cfg.ae_width)


def decode(ae: nn.Module, z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Standardised codes (N, C, h, w) -> images (N, 1, 28, 28): undo the standardisation, decode."""
    dev = next(ae.parameters()).device
    codes = z.flatten(1).cpu() * std + mean  # (N, D)
    if isinstance(ae, SpatialAutoencoder):
        codes = codes.view(z.shape)
    with torch.no_grad():
        return ae.decoder(codes.to(dev)).cpu()


def code_stats(codes: torch.Tensor, scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and the std the codes (N, D) are divided by: each dimension's own
    (``dim``) or, as Rombach et al. scale their latents, one for all (``global``: the root mean
    per-dimension variance), which keeps near-constant code positions (an MNIST image's empty
    border) near zero instead of blowing their jitter up to unit variance."""
    mean, std = codes.mean(0), codes.std(0)
    if scale == "global":
        std = std.pow(2).mean().sqrt().expand_as(std).clone()
    return mean, std + 1e-6


def train_autoencoder(x01: torch.Tensor, cfg: LatentDiffusionConfig, run: Run) -> nn.Module:
    torch.manual_seed(0)
    ae = make_autoencoder(cfg).to(run.device)
    opt = torch.optim.Adam(ae.parameters(), lr=cfg.ae_lr)
    sampler = StepSampler(len(x01), cfg.batch_size, seed=1)
    total = max(1, int(cfg.ae_epochs * sampler.steps_per_epoch))
    for step in range(total):
        set_lr(opt, warmup_cosine(step, total, cfg.ae_lr))  # half a cosine down to 0
        x = x01[sampler.indices(step)].to(run.device)
        loss = reconstruction_loss(x.flatten(1), ae(x).flatten(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == total - 1:
            run.log(step, ae_loss=loss.item())
    return ae.eval()


@torch.no_grad()
def encode(ae: nn.Module, x01: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    dev = next(ae.parameters()).device
    return torch.cat([ae.encoder(x01[i:i + batch].to(dev)).flatten(1).cpu()
                      for i in range(0, len(x01), batch)])  # (N, D) flattened codes, on the CPU


def time_pixel_steps(cfg: LatentDiffusionConfig, steps: int, run: Run) -> float:
    """Seconds per training step of the pixel-space recipe's U-Net at this batch size, placed and run
    like the latent one (``--amp bf16``: channels-last weights and bf16 autocast on both sides)."""
    pix = run.place(build_unet(DDPMConfig(dropout=cfg.dropout)))
    sched = DDPMSchedule(cfg.T, cfg.beta_1, cfg.beta_T)
    opt = torch.optim.Adam(pix.parameters(), lr=1e-4)
    x = torch.randn(cfg.batch_size, 1, 28, 28, device=run.device)
    for i in range(steps + 1):
        if i == 1:
            t0 = time.time()
        with run.autocast():
            loss = sched.loss(pix, x, snr_gamma=cfg.snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.time() - t0) / steps


# Pixel DDPM's training settings for 4x its epochs (about its training time). Min-SNR-5 weights: with per-dimension
# code scaling, at 12 epochs, classifier-FID 72.9 with them against 95.7 without (Intel CPU, --amp bf16).
LATENT_FULL = dict(DDPM_TRAIN, epochs=4 * DDPM_TRAIN["epochs"])


@recipe("latent-diffusion-mnist", lecture=12, section="Diffusion in Latent Space", config=LatentDiffusionConfig,
        datasets=("mnist",),
        presets={"full": LATENT_FULL, "quick": {"train_limit": 2000, "ae_epochs": 1.0, "epochs": 2.0, "T": 200,
                           "beta_T": 0.05, "base": 16, "batch_size": 64, "lr": 1e-3, "ema": 0.9, "n_eval": 16,
                           "ddim_steps": 10, "dropout": 0.0, "grader": "quick", "pixel_timing_steps": 1,
                           "ckpt_every": 0}},
        target=Target("speedup_per_epoch", ">=", 4.0, "issue 8: latent diffusion >= 4x faster per epoch than "
                      "pixel DDPM (at classifier-FID no worse than 1.5x)"))
def latent_diffusion_mnist(cfg: LatentDiffusionConfig, run: Run) -> dict[str, float]:
    """Autoencoder to a 4x7x7 code, DDPM on the standardised codes, decoded samples graded."""
    from ..data.images import mnist
    pixels = mnist("train")[0]
    if cfg.train_limit:
        pixels = pixels[: cfg.train_limit]
    x01 = pixels.float().unsqueeze(1) / 255.0  # (N, 1, 28, 28)
    t0 = time.time()
    ae = train_autoencoder(x01, cfg, run)
    ae_seconds = time.time() - t0
    codes = encode(ae, x01)
    mean, std = code_stats(codes, cfg.code_scale)
    z = ((codes - mean) / std).view(-1, *cfg.latent_shape)  # (N, C, h, w), unit scale
    run.state["code_mean"], run.state["code_std"] = mean, std
    sched = DDPMSchedule(cfg.T, cfg.beta_1, cfg.beta_T)
    model = build_unet(cfg, in_ch=cfg.latent_shape[0])
    run.watch(ae=ae)
    ema_model, result = train_eps_model(model, sched, z, cfg, run)
    result["ae_seconds"] = ae_seconds
    if run.is_main:
        with torch.no_grad():
            recon = ae(x01[-16:].to(run.device)).cpu()
        result["ae_test_mse"] = float(reconstruction_loss(x01[-16:].flatten(1), recon.flatten(1)))
        eps_fn = sampling_eps_fn(ema_model, run, cfg.sample_amp)
        shape = tuple(cfg.latent_shape)
        ddpm = sample_batched(lambda n, seed: decode(ae, sched.ddpm_sample(
            eps_fn, (n, *shape), torch.Generator().manual_seed(seed), device=run.device, eps_scale=cfg.eps_scale),
            mean, std), cfg.n_eval)
        ddim = sample_batched(lambda n, seed: decode(ae, sched.ddim_sample(
            eps_fn, (n, *shape), cfg.ddim_steps, cfg.ddim_eta, torch.Generator().manual_seed(seed), device=run.device,
            eps_scale=cfg.ddim_eps_scale), mean, std), cfg.n_eval)
        from ..engine.plots import save_image_grid
        save_image_grid(run, "samples_ddpm", ddpm[:64], title=f"latent DDPM, {cfg.T} steps")
        save_image_grid(run, "samples_ddim", ddim[:64], title=f"latent DDIM, {cfg.ddim_steps} steps")
        result.update(grade(ddpm, "mnist", cfg.grader))
        result.update(grade(ddim, "mnist", cfg.grader, prefix="ddim_"))
        if cfg.pixel_timing_steps:
            latent_step = result["epoch_seconds"] / (len(z) // cfg.batch_size)
            pixel_step = time_pixel_steps(cfg, cfg.pixel_timing_steps, run)
            result.update(latent_step_s=latent_step, pixel_step_s=pixel_step,
                          speedup_per_epoch=pixel_step / latent_step)
        if cfg.pixel_run:
            result["pixel_classifier_fid"] = pixel_fid(cfg.pixel_run)
            result["fid_ratio_to_pixel"] = result["classifier_fid"] / result["pixel_classifier_fid"]
    run.checkpoint()
    return result


def load_latent_run(run_dir: Path, saved: dict) -> tuple:
    """A finished run's (config, autoencoder, EMA U-Net, code mean, code std), all in eval mode on the CPU."""
    from ..engine.config import from_dict
    cfg = from_dict(LatentDiffusionConfig, {"latent": "dense", **saved["config"]})  # runs before 'latent': dense
    run_dir = Path(run_dir)
    ae = make_autoencoder(cfg)
    ae.load_state_dict(load_run_weights(run_dir, "ae"))
    model = build_unet(cfg, in_ch=cfg.latent_shape[0])
    model.load_state_dict(load_run_weights(run_dir, "ema"))
    pointer = (run_dir / "checkpoints" / "latest").read_text().strip()
    state = torch.load(run_dir / "checkpoints" / pointer / "state.pt", weights_only=True)["state"]
    return cfg, ae.eval(), model.eval(), state["code_mean"], state["code_std"]


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --n 64 --out grid.png``: DDIM in the latent (``--length`` steps), decoded."""
    cfg, ae, model, mean, std = load_latent_run(run_dir, saved)
    sched = DDPMSchedule(cfg.T, cfg.beta_1, cfg.beta_T)
    steps = min(max(1, args.length), cfg.T)
    z = sched.ddim_sample(lambda x, t: model(x, t), (args.n, *cfg.latent_shape), steps, cfg.ddim_eta,
                          torch.Generator().manual_seed(args.seed), eps_scale=cfg.ddim_eps_scale)
    x = decode(ae, z, mean, std)
    out = write_grid(args.out, x)
    return f"wrote {args.n} samples (latent DDIM, {steps} steps) to {out}"
