"""Samplers compared on one trained ``ddpm-mnist`` run: which of them reach the 1000-step FID?

Issue 8 asks DDIM with 50 steps to come within 10% of the 1000-step classifier-FID. This script loads
the EMA weights of a finished (or stopped) ``ddpm-mnist`` run and grades, on the same number of samples
from the same seeds, each sampler named in ``--samplers``. A ``latent-diffusion-mnist`` run works too:
its samplers run on the codes, which its autoencoder decodes before grading (``--seed 0`` reproduces the
recipe's own ``classifier_fid``):

* ``ddpm``: the recipe's 1000-step ancestral sampler, ``sigma_t^2 = beta_t``, x_0 clipped (Ho et al.);
* ``ddpm_tilde``: the same with the posterior variance ``beta~_t``;
* ``ddimS`` / ``ddimS_quad``: deterministic DDIM (eta = 0) on S uniform / quadratic timesteps;
* ``ddimS_etaX`` (also after ``_quad``): DDIM with eta = X (``_eta1``: as stochastic as DDPM);
* a ``_lamL`` suffix on any of them (``ddpm_lam0.98``, ``ddim50_eta1_lam0.95``): Epsilon Scaling, the sampler
  uses eps_theta / L (Ning et al. 2024; the recipe's ``eps_scale`` / ``ddim_eps_scale``). ``ddpm-mnist``'s
  preset samples DDIM at 0.95, so ``ddim50_lam0.95`` reproduces its ``ddim_classifier_fid``, not ``ddim50``.

``--clip off`` samples without clipping the implied x_0 (``ddpm-mnist`` clips, as Ho et al.'s code does;
the latent recipe does not: its codes have no fixed range).

    DLNOTES_DATA=../shared/data .venv/bin/python benchmarks/ddpm_samplers.py RUN_DIR \\
        --n 1000 --samplers ddpm,ddim50,ddim50_quad,ddim100 [--device cuda] [--batch 1000] [--bf16 --compile]

Each line printed is one sampler's scores and wall time; the last line is one JSON object with every
sampler's ``classifier_fid``, its ratio to ``ddpm``'s or ``--base``'s (``ratio_to_ddpm``) and the real test
set's floor for ``--n`` samples. On a CPU a 1000-step sampler over 1000 images takes about as long as the forward
passes of 8 training epochs; use a GPU or a smaller ``--n`` for a quick look (FIDs of fewer samples are
biased upwards, so compare samplers at equal ``--n`` only).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dlnotes.engine.config import from_dict  # noqa: E402
from dlnotes.engine.run import load_run_weights  # noqa: E402
from dlnotes.eval.sample_quality import real_floor, score_samples  # noqa: E402
from dlnotes.generative.diffusion import DDPMConfig, DDPMSchedule, build_unet, to_unit  # noqa: E402
from dlnotes.generative.latent_diffusion import decode, load_latent_run  # noqa: E402

SAMPLER = re.compile(r"^(ddpm|ddpm_tilde|ddim(\d+)(_quad)?(_eta([0-9.]+))?)(_lam([0-9.]+))?$")


def load(run_dir: Path, device: str):
    """(config, EMA U-Net, shape of one sample, samples -> images in [0, 1], the run's clip_x0)."""
    saved_path = run_dir / "config.json"
    if not saved_path.exists():
        raise SystemExit(f"{run_dir} is not a run directory (no config.json); pass a ddpm-mnist run")
    saved = json.loads(saved_path.read_text())
    if saved.get("recipe") == "latent-diffusion-mnist":
        cfg, ae, model, mean, std = load_latent_run(run_dir, saved)
        return cfg, model.to(device), tuple(cfg.latent_shape), lambda z: decode(ae, z, mean, std), False
    if saved.get("recipe") not in (None, "ddpm-mnist"):
        raise SystemExit(f"{run_dir} is a {saved['recipe']!r} run; this script grades ddpm-mnist and "
                         "latent-diffusion-mnist runs")
    cfg = from_dict(DDPMConfig, saved["config"])
    model = build_unet(cfg)
    model.load_state_dict(load_run_weights(run_dir, "ema"))
    return cfg, model.to(device).eval(), (1, 28, 28), to_unit, cfg.clip_x0


def sampler_fn(name: str, sched: DDPMSchedule, eps_fn, clip: bool, device: str):
    m = SAMPLER.match(name)
    if not m:
        raise SystemExit(f"unknown sampler {name!r}: use ddpm, ddpm_tilde, ddimS, ddimS_quad, ddimS_etaX, "
                         "each optionally with _lamL")
    try:
        lam = float(m.group(7) or 1.0)
    except ValueError:
        lam = 0.0
    if not 0.5 <= lam <= 2:
        raise SystemExit(f"sampler {name!r}: the _lam suffix divides the predicted noise by L; use a number "
                         "between 0.5 and 2 (e.g. ddim50_lam0.95)")
    if m.group(1) in ("ddpm", "ddpm_tilde"):
        variance = "beta" if m.group(1) == "ddpm" else "beta_tilde"
        return lambda shape, g: sched.ddpm_sample(eps_fn, shape, g, variance=variance, clip=clip, device=device,
                                                  eps_scale=lam)
    steps, eta = int(m.group(2)), float(m.group(5) or 0.0)
    spacing = "quadratic" if m.group(3) else "uniform"
    return lambda shape, g: sched.ddim_sample(eps_fn, shape, steps, eta, g, clip=clip, device=device,
                                              spacing=spacing, eps_scale=lam)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=1000, help="samples per sampler")
    ap.add_argument("--batch", type=int, default=250, help="images per sampling batch (the recipe's: 250)")
    ap.add_argument("--samplers", default="ddpm,ddim50,ddim50_quad,ddim100")
    ap.add_argument("--base", default="ddpm", help="the sampler whose FID the ratios divide by (e.g. ddpm_lam0.98)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true",
                    help="autocast the U-Net to bf16 (a GPU, or a CPU with AMX / AVX-512 BF16; ddpm-mnist's preset "
                         "samples so, its sample_amp)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the U-Net as the recipes do under --compile (with --bf16, CPU: 2.4x faster)")
    ap.add_argument("--clip", choices=("run", "on", "off"), default="run",
                    help="clip the implied x_0 to [-1, 1]: as the run's config says (clip_x0), or on / off")
    ap.add_argument("--save", type=Path, default=None, help="write each sampler's images (in [0, 1]) here as .pt")
    ap.add_argument("--seed", type=int, default=0,
                    help="batch i starts from seed + i (0: the recipe's seeds; another value: a fresh draw)")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.samplers.split(",") if s.strip()]
    if args.base != "ddpm" and args.base not in names:
        raise SystemExit(f"--base {args.base}: not among --samplers ({', '.join(names)}); name one of them")
    for name in names:  # refuse a misspelt sampler before any sampling, not after the first ones have run
        sampler_fn(name, None, None, False, args.device)
    cfg, model, shape, to_images, run_clip = load(args.run_dir, args.device)
    if cfg.dataset != "mnist":
        raise SystemExit(f"the grader knows mnist runs; this run trained on {cfg.dataset!r}")
    sched = DDPMSchedule(cfg.T, cfg.beta_1, cfg.beta_T)
    if args.compile:  # as diffusion.sampling_model: the default memory layout, then inductor
        model = torch.compile(model.to(memory_format=torch.contiguous_format))

    def eps_fn(x, t):
        with torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.bf16):
            return model(x, t).float()

    out = {"run": str(args.run_dir), "n": args.n, "batch": args.batch, "clip": args.clip, "seed": args.seed,
           "floor_fid": real_floor("mnist", cfg.grader, n=args.n)["classifier_fid"]}
    for name in names:
        clip = run_clip if args.clip == "run" else args.clip == "on"
        fn = sampler_fn(name, sched, eps_fn, clip, args.device)
        t0 = time.time()
        # --seed 0 gives the recipe's seeds: batch i starts from torch.Generator().manual_seed(i)
        x = torch.cat([to_images(fn((min(args.batch, args.n - i), *shape),
                                    torch.Generator().manual_seed(args.seed + i))).cpu()
                       for i in range(0, args.n, args.batch)])
        wall = time.time() - t0
        s = score_samples(x, dataset="mnist", classifier=cfg.grader)
        out[name] = {"classifier_fid": s["classifier_fid"], "sample_confidence": s["sample_confidence"],
                     "wall_s": wall}
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            torch.save(x, args.save / f"{name}.pt")
        print(json.dumps({name: out[name]}), flush=True)
    if args.base in out:
        for k, v in out.items():
            if isinstance(v, dict):
                v["ratio_to_ddpm"] = v["classifier_fid"] / out[args.base]["classifier_fid"]
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
