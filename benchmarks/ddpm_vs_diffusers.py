"""dlnotes' DDPM against diffusers' ``UNet2DModel`` + ``DDPMScheduler`` on MNIST, side by side.

Both sides get the same parameter count (diffusers' widths are chosen to land within a few percent of
ours; both counts are printed), the same data order, loss (``||eps - eps_theta(x_t, t)||^2`` on the
closed-form ``q(x_t | x_0)`` with the linear 1e-4 .. 0.02 schedule, T = 1000), optimiser (Adam, the
``ddpm-mnist`` recipe's rate and warm-up, clipping at 1), EMA (0.999) and the same wall-clock training
budget on the same threads: both run through :func:`dlnotes.generative.diffusion.train_eps_model`.
diffusers' U-Net indexes steps from 0, so it is called with ``t - 1``. Each side then samples with its
own 1000-step ancestral sampler (ours: ``sigma_t^2 = beta_t``, x_0 clipped; diffusers: ``DDPMScheduler``
with its defaults, ``fixed_small`` variance and ``clip_sample``), and one classifier grades both sets.

    pip install diffusers     # optional: not a dependency of dlnotes
    OMP_NUM_THREADS=2 DLNOTES_DATA=../shared/data .venv/bin/python benchmarks/ddpm_vs_diffusers.py \\
        --minutes 10 --samples 250

The last line printed is one JSON object; ``fid_ratio`` is ours / diffusers (goal: <= 1). The FIDs
of a few hundred samples are biased upwards; ``floor_fid`` (the real test set against as many
training images) is printed for scale. The budget must buy a few thousand steps: after n steps the
EMA weights still hold ``ema^n`` of the random initialisation (``ema_init_share`` in the output;
10 minutes on one thread bought 604 steps, 55% at 0.999, and both sides sampled noise). ``--ema``
lowers the decay for short budgets, on both sides alike.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn


class DiffusersEps(nn.Module):
    """``eps_theta(x_t, t)`` with our t in 1..T, for a diffusers U-Net that counts steps from 0."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t):
        return self.unet(x, t - 1).sample


def diffusers_unet(channels: tuple[int, ...]):
    from diffusers import UNet2DModel

    # the same layout as ours: three levels (28, 14, 7), self-attention at the 7x7 level only
    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=channels, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))


@torch.no_grad()
def diffusers_sample(unet, n: int, seed: int, amp) -> torch.Tensor:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    sched.set_timesteps(1000)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, 28, 28), generator=g)
    for t in sched.timesteps:
        with amp():
            eps = unet(x, t).sample.float()
        x = sched.step(eps, t, x, generator=g).prev_sample
    return x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per side (wall clock)")
    p.add_argument("--samples", type=int, default=1000, help="samples per side (1000 ancestral steps each)")
    p.add_argument("--amp", default="bf16", choices=["none", "bf16"], help="autocast for training and sampling")
    p.add_argument("--their-channels", default="24,48,56", help="diffusers block_out_channels")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="", help="run directories and sample grids (default: a new "
                   "runs/ddpm_vs_diffusers/<time> folder, so an earlier comparison is never overwritten)")
    p.add_argument("--dataset", default="mnist", help="mnist | digits8x8 (built in, a smoke test)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the sampled weights (the recipe's 0.999)")
    args = p.parse_args(argv)
    args.out = args.out or f"runs/ddpm_vs_diffusers/{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        channels = tuple(int(c) for c in args.their_channels.split(","))
    except ValueError:
        sys.exit(f"--their-channels must be comma-separated integers such as 24,48,56, not {args.their_channels!r}")
    import importlib.util

    if importlib.util.find_spec("diffusers") is None:
        sys.exit("diffusers is not installed: pip install diffusers")

    from dlnotes.engine import Run
    from dlnotes.engine.plots import write_grid
    from dlnotes.eval.sample_quality import real_floor
    from dlnotes.generative.diffusion import (DDPMConfig, DDPMSchedule, DDPM_FULL, build_unet, grade,
                                              sample_batched, to_model_space, to_unit, train_eps_model)
    from dlnotes.data.images import by_name

    cfg = DDPMConfig(**{**DDPM_FULL, "epochs": 1e6, "ckpt_every": 0, "ema": args.ema})  # the budget stops training
    data = to_model_space(by_name(args.dataset, "train")[0])
    if data.shape[-1] != 28:
        data = torch.nn.functional.interpolate(data, size=28, mode="bilinear")
    sched = DDPMSchedule(cfg.T, cfg.beta_1, cfg.beta_T)
    sides = {"dlnotes": build_unet(cfg),
             "diffusers": DiffusersEps(diffusers_unet(channels))}
    out: dict = {"minutes": args.minutes, "samples": args.samples, "amp": args.amp, "threads": torch.get_num_threads()}
    grids = []
    for name, model in sides.items():
        torch.manual_seed(0)
        run = Run(Path(args.out) / name, device=args.device, amp=args.amp, max_minutes=args.minutes, quiet=True)
        t0 = time.time()
        ema, res = train_eps_model(model, sched, data, cfg, run)
        steps = run.step
        ema.eval()

        def amp():
            return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=args.amp == "bf16")

        t1 = time.time()
        if name == "dlnotes":
            def draw(n, seed):
                with amp():
                    return sched.ddpm_sample(lambda x, t: ema(x, t), (n, 1, 28, 28), torch.Generator().manual_seed(seed),
                                             clip=cfg.clip_x0, device=run.device).cpu()
        else:
            def draw(n, seed):
                return diffusers_sample(ema.unet, n, seed, amp)
        x = sample_batched(draw, args.samples)
        t2 = time.time()
        grids.append(write_grid(Path(args.out) / f"{name}_samples.png", to_unit(x[:64])))
        scores = grade(to_unit(x), "mnist", "full") if args.dataset == "mnist" else {}
        out[name] = {"params": sum(p.numel() for p in model.parameters()), "steps": steps,
                     "s_per_step": (t1 - t0) / max(steps, 1), "train_min": (t1 - t0) / 60,
                     "sample_min": (t2 - t1) / 60, "ema_init_share": cfg.ema ** steps, **scores}
        print(name, json.dumps(out[name]), flush=True)
    if args.dataset == "mnist":
        out["floor_fid"] = real_floor("mnist", "full", n=args.samples)["classifier_fid"]
        out["fid_ratio"] = out["dlnotes"]["classifier_fid"] / out["diffusers"]["classifier_fid"]
    out["param_ratio"] = out["dlnotes"]["params"] / out["diffusers"]["params"]
    out["grids"] = [str(g) for g in grids]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
