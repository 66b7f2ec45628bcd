"""Forward + backward time of dlnotes' multi-head attention against PyTorch's, at a few sizes.

Compares, per size (batch B, length T, width d, heads h), self-attention with a causal mask:
  ours_explicit  MultiHeadAttention(fast=False): softmax(QK^T/sqrt(d))V written out
  ours_sdpa      MultiHeadAttention(fast=True): same projections, fused F.scaled_dot_product_attention
  torch_mha      nn.MultiheadAttention (batch_first)
  sdpa_only      F.scaled_dot_product_attention on ready-made q, k, v (no projections)
The variants are timed in interleaved rounds (median over rounds) so that load from other processes
hits them alike; ratios to torch_mha are reported. Prints a table, then one JSON line.

    python benchmarks/attention_bench.py [--threads 2] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from dlnotes.sequence.attention import MultiHeadAttention

SIZES = [(32, 64, 128, 4), (16, 128, 256, 8), (8, 256, 256, 8), (4, 512, 512, 8)]


def time_fn(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def bench_size(b, t, d, h, rounds, reps):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(d, h, batch_first=True)
    ours = MultiHeadAttention(d, h).load_torch_mha(ref)
    x = torch.randn(b, t, d, requires_grad=True)
    causal = nn.Transformer.generate_square_subsequent_mask(t)
    q, k, v = (torch.randn(b, h, t, d // h, requires_grad=True) for _ in range(3))

    def ours_explicit():
        ours.fast = False
        ours(x, causal=True)[0].sum().backward()

    def ours_sdpa():
        ours.fast = True
        ours(x, causal=True)[0].sum().backward()

    def torch_mha():
        ref(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0].sum().backward()

    def sdpa_only():
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    fns = {"ours_explicit": ours_explicit, "ours_sdpa": ours_sdpa, "torch_mha": torch_mha, "sdpa_only": sdpa_only}
    for f in fns.values():
        f()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            times[name].append(time_fn(f, reps))
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}  # ms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'B':>3} {'T':>4} {'d':>4} {'h':>2}  " + "  ".join(f"{k:>14}" for k in
          ["ours_explicit", "ours_sdpa", "torch_mha", "sdpa_only"]) + "   (ms, forward+backward)")
    for b, t, d, h in SIZES:
        ms = bench_size(b, t, d, h, args.rounds, args.reps)
        rows.append({"B": b, "T": t, "d": d, "h": h, **{k: round(v, 3) for k, v in ms.items()},
                     "explicit_over_torch": round(ms["ours_explicit"] / ms["torch_mha"], 3),
                     "sdpa_over_torch": round(ms["ours_sdpa"] / ms["torch_mha"], 3)})
        print(f"{b:>3} {t:>4} {d:>4} {h:>2}  " + "  ".join(f"{ms[k]:>14.3f}" for k in ms))
    gmean = lambda xs: float(torch.tensor(xs).log().mean().exp())  # noqa: E731
    print(json.dumps({"benchmark": "attention", "threads": args.threads, "sizes": rows,
                      "geomean_explicit_over_torch": round(gmean([r["explicit_over_torch"] for r in rows]), 3),
                      "geomean_sdpa_over_torch": round(gmean([r["sdpa_over_torch"] for r in rows]), 3)}))


if __name__ == "__main__":
    main()
