"""Seconds per Penn Treebank epoch and tokens/s: dlnotes' word LM vs PyTorch's reference example.

Three training loops run in the same process, in interleaved chunks so machine noise hits all
of them alike:

* ``ours_small``: dlnotes ``RNNLM`` with the Zaremba et al. small configuration (2x200 LSTM,
  unroll 20, batch 20), one step exactly as ``train_lm`` does it;
* ``ours_refcfg``: dlnotes ``RNNLM`` with the reference example's default configuration;
* ``reference``: PyTorch's ``examples/word_language_model`` default (emsize 200, nhid 200,
  2 layers, bptt 35, batch 20, dropout 0.2, lr 20, clip 0.25) rebuilt here with ``nn.LSTM``:
  embedding -> dropout -> LSTM -> dropout -> linear -> log_softmax + NLL, manual SGD update.

Prints one JSON line: seconds per epoch (extrapolated from the timed steps over the full epoch),
tokens/s and the ratios. ``--steps`` sets the timed steps per loop.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from dlnotes.data.sampling import batchify, tbptt_window
from dlnotes.sequence.rnn import clip_grad_norm
from dlnotes.sequence.rnn_lm import RNNLM, detach, load_corpus


class ReferenceRNNModel(nn.Module):
    """The reference example's RNNModel (LSTM branch), untied weights."""

    def __init__(self, ntoken, ninp=200, nhid=200, nlayers=2, dropout=0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x, hidden):
        emb = self.drop(self.encoder(x))
        out, hidden = self.rnn(emb, hidden)
        return F.log_softmax(self.decoder(self.drop(out)), dim=-1), hidden


def make_ours(train_ids, vocab, bptt, dropout, lr, clip):
    data = batchify(train_ids, 20)
    model = RNNLM(vocab, 200, 200, 2, "lstm", dropout=dropout, init_range=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    box = {"state": None, "i": 0}

    def step():
        if box["i"] + 1 >= data.shape[1]:
            box["i"], box["state"] = 0, None
        x, y = tbptt_window(data, box["i"], bptt)
        logits, state = model(x, box["state"])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        box["state"] = detach(state)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(model.parameters(), clip)
        opt.step()
        box["i"] += bptt
        return x.numel()

    return step, (data.shape[1] - 1) // bptt


def make_reference(train_ids, vocab):
    data = batchify(train_ids, 20).T.contiguous()  # (L, B) as the example lays it out
    model = ReferenceRNNModel(vocab)
    box = {"hidden": None, "i": 0}

    def step():
        if box["i"] + 1 >= data.shape[0]:
            box["i"], box["hidden"] = 0, None
        seq_len = min(35, data.shape[0] - 1 - box["i"])
        x, y = data[box["i"]: box["i"] + seq_len], data[box["i"] + 1: box["i"] + 1 + seq_len]
        h = box["hidden"]
        if h is not None:
            h = tuple(v.detach() for v in h)
        model.zero_grad()
        out, box["hidden"] = model(x, h)
        loss = F.nll_loss(out.view(-1, vocab), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-20)
        box["i"] += 35
        return x.numel()

    return step, (data.shape[0] - 1) // 35


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="timed steps per loop")
    ap.add_argument("--chunk", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ids, vocab, _ = load_corpus("ptb")
    train, V = ids["train"], len(vocab)
    loops = {
        "ours_small": make_ours(train, V, bptt=20, dropout=0.0, lr=20.0, clip=0.25),
        "ours_refcfg": make_ours(train, V, bptt=35, dropout=0.2, lr=20.0, clip=0.25),
        "reference": make_reference(train, V),
    }
    spent = {k: 0.0 for k in loops}
    tokens = {k: 0 for k in loops}
    steps = {k: 0 for k in loops}
    for k, (step, _) in loops.items():  # warm-up
        for _ in range(5):
            step()
    while min(steps.values()) < args.steps:
        for k, (step, _) in loops.items():
            t0 = time.perf_counter()
            for _ in range(args.chunk):
                tokens[k] += step()
            spent[k] += time.perf_counter() - t0
            steps[k] += args.chunk
    out = {"threads": torch.get_num_threads(), "timed_steps": steps["ours_small"]}
    for k, (_, per_epoch) in loops.items():
        out[f"{k}_tokens_per_s"] = round(tokens[k] / spent[k], 1)
        out[f"{k}_s_per_epoch"] = round(spent[k] / steps[k] * per_epoch, 1)
    out["ratio_reference_over_ours_small_epoch"] = round(out["reference_s_per_epoch"] / out["ours_small_s_per_epoch"], 3)
    out["speedup_ours_vs_reference_same_config"] = round(
        out["ours_refcfg_tokens_per_s"] / out["reference_tokens_per_s"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
