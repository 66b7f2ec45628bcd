"""Character-GPT training throughput and model FLOPs utilisation (MFU) on this CPU.

1. Measures the fp32 matmul peak: best GFLOP/s of a 2048x2048 ``torch.matmul`` (2 n^3 FLOPs).
2. Times training steps (forward, backward, clip, AdamW) of nanoGPT's CPU configuration (the
   ``char-gpt-nanogpt`` recipe) and of dlnotes' ``char-gpt`` recipe, fp32 and (on CPUs with native
   bf16) bf16 autocast, interleaved in rounds (median), and reports it/s, tokens/s and
   ``MFU = flops_per_token * tokens/s / peak`` with ``flops_per_token = 6N + 12 L T d``.
3. With ``--train``, also runs both recipes end to end one after the other (same machine, same
   threads) and reports their validation loss and training wall time, so the wall-clock budgets are
   compared within one session.

    python benchmarks/char_gpt_bench.py [--threads 2] [--rounds 5] [--train]

Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from dlnotes.engine import recipes as R
from dlnotes.engine.dist import bf16_supported
from dlnotes.sequence.char_gpt import (build_model, get_batch, load_chars, make_optimizer,
                                       measure_matmul_gflops)


def make_stepper(cfg, train, amp: str):
    torch.manual_seed(0)
    model = build_model(cfg, 65)
    opt = make_optimizer(model, cfg)
    state = {"i": 0}

    def step():
        x, y = get_batch(train, cfg.batch_size, cfg.context, state["i"])
        state["i"] += 1
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp == "bf16" else torch.autocast("cpu", enabled=False)
        with ctx:
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model, step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    p.add_argument("--train", action="store_true", help="also run both recipes end to end")
    p.add_argument("--corpus", default="shakespeare")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    peak = measure_matmul_gflops()
    train, _, _ = load_chars(args.corpus)
    variants = {}
    # emulated bf16 (no AVX-512 BF16 / AMX) is many times slower than fp32: time it only where native
    amps = ("none", "bf16") if bf16_supported(torch.device("cpu")) else ("none",)
    for recipe_name in ("char-gpt-nanogpt", "char-gpt"):
        cfg = R.get(recipe_name).make_config("full")
        for amp in amps:
            variants[f"{recipe_name}/{amp}"] = (cfg, *make_stepper(cfg, train, amp))
    for _, _, step in variants.values():
        for _ in range(3):
            step()  # warm-up
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for k, (_, _, step) in variants.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[k].append((time.perf_counter() - t0) / args.steps)
    rows = {}
    print(f"fp32 matmul peak (2048^2, {args.threads} threads): {peak:.1f} GFLOP/s")
    print(f"{'variant':28s} {'it/s':>8} {'tok/s':>9} {'MFU':>6}  {'2000-it wall (s)':>16}")
    for k, (cfg, model, _) in variants.items():
        s = statistics.median(times[k])
        tok_s = cfg.batch_size * cfg.context / s
        mfu = model.flops_per_token() * tok_s / (peak * 1e9)
        rows[k] = {"it_per_s": round(1 / s, 2), "tokens_per_s": round(tok_s), "mfu": round(mfu, 3),
                   "projected_train_s": round(cfg.iters * s, 1), "iters": cfg.iters}
        print(f"{k:28s} {1 / s:8.2f} {tok_s:9.0f} {mfu:6.1%}  {cfg.iters * s:16.1f}")
    out = {"benchmark": "char_gpt", "threads": args.threads, "matmul_peak_gflops": round(peak, 1),
           "variants": rows}
    if args.train:
        os.environ.setdefault("DLNOTES_QUIET", "1")
        for name in ("char-gpt-nanogpt", "char-gpt"):
            run_dir, res = R.execute(name, runs_root="runs/bench", quiet=True)
            out[name] = {k: res[k] for k in ("val_loss", "train_s", "wall_s", "throughput", "mfu")}
            out[name]["run_dir"] = str(run_dir)
            print(f"{name}: val_loss {res['val_loss']:.4f}, training {res['train_s']:.1f} s, "
                  f"{res['throughput']:.0f} tok/s, MFU {res['mfu']:.1%}")
        out["same_budget"] = out["char-gpt"]["train_s"] <= 1.05 * out["char-gpt-nanogpt"]["train_s"]
        out["lower_val_loss"] = out["char-gpt"]["val_loss"] < out["char-gpt-nanogpt"]["val_loss"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
