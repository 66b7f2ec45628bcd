"""Seconds per training step of every Lecture 13 method at its full-recipe batch, on random data.

Prints one JSON line: {method: {"s_per_step", "steps_full", "projected_full_min"}}, where the
projection is the full recipe's step count times the measured step time (training only; evaluation
is extra). Usage: OMP_NUM_THREADS=2 python benchmarks/lecture13_throughput.py [--repeats 3] [--amp bf16]

``--amp bf16`` times the step as ``dlnotes run ... --amp bf16`` runs it: bf16 autocast, and
channels-last weights for the convolutional models (``Run.place``).
"""
from __future__ import annotations

import argparse
import json
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated subset of methods")
    ap.add_argument("--amp", default="none", choices=["none", "bf16"])
    args = ap.parse_args()
    amp = args.amp == "bf16"

    def prep(model):  # what Run.place does under --amp bf16
        return model.to(memory_format=torch.channels_last) if amp else model
    from dlnotes.fewshot.maml import MAMLConfig, MAMLNet, meta_loss
    from dlnotes.fewshot.matching import MatchingConfig, MatchingNet
    from dlnotes.fewshot.protonet import ProtoConfig, ProtoNet
    from dlnotes.fewshot.relation import RelationConfig, RelationNet
    from dlnotes.fewshot.siamese import SiameseConfig, SiameseNet
    from dlnotes.fewshot.train import episode_scores
    from dlnotes.selfsup.clip import CLIP, CLIPConfig, CaptionTokenizer, training_vocabulary
    from dlnotes.selfsup.simclr import SimCLR, SimCLRConfig, nt_xent

    torch.manual_seed(0)
    out = {}

    def episodic(name, model, cfg):
        model = prep(model)
        opt = torch.optim.Adam(model.parameters())
        n, k, q = cfg.train_way, cfg.train_shot, cfg.train_query
        xs, xq = torch.rand(n, k, 1, 28, 28), torch.rand(n, q, 1, 28, 28)
        y = torch.arange(n).repeat_interleave(q)

        def step():
            loss = model.loss(episode_scores(model, xs, xq), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step, cfg.episodes

    def maml():
        cfg = MAMLConfig()
        model = prep(MAMLNet(cfg.n_way))
        opt = torch.optim.Adam(model.parameters())
        tasks = [(torch.rand(5, 1, 28, 28), torch.arange(5), torch.rand(5 * cfg.n_query, 1, 28, 28),
                  torch.arange(5).repeat_interleave(cfg.n_query)) for _ in range(cfg.meta_batch)]

        def step():
            loss, _ = meta_loss(model, tasks, cfg.inner_lr, cfg.inner_steps, cfg.first_order)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step, cfg.episodes

    def siamese():
        cfg = SiameseConfig()
        model = prep(SiameseNet())
        opt = torch.optim.Adam(model.parameters())
        x, same = torch.rand(2 * cfg.batch, 1, 28, 28), torch.rand(cfg.batch).round()

        def step():
            z = model.embed(x)
            loss = model.loss(model.pair_logits(z[: cfg.batch], z[cfg.batch:]), same)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step, cfg.episodes

    def simclr():
        cfg = SimCLRConfig()
        model = prep(SimCLR(cfg.width, cfg.depth, cfg.proj_dim))
        opt = torch.optim.Adam(model.parameters())
        x = torch.rand(2 * cfg.batch, 1, 28, 28)

        def step():
            z = model(x)
            loss = nt_xent(z[: cfg.batch], z[cfg.batch:], cfg.tau)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step, int(cfg.epochs * 60000 // cfg.batch)

    def clip():
        cfg = CLIPConfig()
        tok = CaptionTokenizer(training_vocabulary())
        model = prep(CLIP(len(tok), cfg.embed_dim, cfg.width, cfg.d_model, cfg.n_layers, cfg.n_heads))
        opt = torch.optim.AdamW(model.parameters())
        x = torch.rand(cfg.batch, 1, 28, 28)
        ids = tok.encode(["a thin handwritten seven slanted right"] * cfg.batch)

        def step():
            loss = model.loss(x, ids)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step, int(cfg.epochs * 120000 // cfg.batch)

    makers = {
        "protonet": lambda: episodic("protonet", ProtoNet(), ProtoConfig()),
        "matching": lambda: episodic("matching", MatchingNet(), MatchingConfig()),
        "relation": lambda: episodic("relation", RelationNet(), RelationConfig()),
        "maml": maml, "siamese": siamese, "simclr": simclr, "clip": clip,
    }
    only = [m for m in args.only.split(",") if m] or list(makers)
    for name in only:
        step, total = makers[name]()

        def autocast_step(step=step):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                step()
        s = timed(autocast_step, args.repeats)
        out[name] = {"s_per_step": round(s, 4), "steps_full": total, "projected_full_min": round(s * total / 60, 1)}
    out["threads"] = torch.get_num_threads()
    out["amp"] = args.amp
    print(json.dumps(out))


if __name__ == "__main__":
    main()
