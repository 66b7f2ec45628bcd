"""Recurrent language models trained with truncated backpropagation through time (Lecture 6).

The model is the notes' ``h_t = f(h_{t-1}, x_t)``, ``y_t = softmax(V h_t)`` with an embedding in
front and a stack of RNN / GRU / LSTM layers (:mod:`dlnotes.sequence.rnn`). The loss is the mean
cross-entropy ``L = -(1/T) sum_t log y_t[w_t]`` and perplexity is ``exp(L)``.

Truncated BPTT: the corpus is laid out as ``B`` parallel streams; each step takes a window of
``bptt`` tokens, starts from the previous window's final hidden state *detached* from the graph
(so gradients flow back at most ``bptt`` steps), and clips the global gradient norm
(``g <- alpha g / ||g||``) before the SGD/Adam update.

Recipes:

* ``ptb-lstm-small``: Zaremba et al. (2014) "small" word model on Penn Treebank: 2x200 LSTM,
  unroll 20, batch 20, SGD lr 1 halved each epoch after the 4th, clip 5, 13 epochs, weights
  uniform in [-0.1, 0.1], no dropout. The paper reports test perplexity 114.5. Their loss is
  summed over the 20 unrolled steps (mean over the batch); ours is the per-token mean, so the
  same update is lr 20 and clip 0.25 here (the gradient is 20x smaller, the threshold too).
* ``shakespeare-char-{rnn,gru,lstm}``: character models on Tiny Shakespeare (first 90% train,
  last 10% validation), reporting validation loss in nats per character and a sampled passage.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import text as T
from ..data.sampling import batchify, rank_rows, tbptt_window
from ..engine.run import load_run_weights
from ..engine import Run, Target, recipe
from ..engine.schedules import set_lr
from .rnn import Recurrent, clip_grad_norm, torch_module


class RNNLM(nn.Module):
    """Embedding -> recurrent stack -> linear decoder to vocabulary logits."""

    def __init__(self, vocab_size: int, emb: int, hidden: int, layers: int, cell: str = "lstm",
                 dropout: float = 0.0, impl: str = "torch", init_range: float = 0.0):
        super().__init__()
        self.cell, self.impl = cell, impl
        self.embed = nn.Embedding(vocab_size, emb)
        drop = dropout if layers > 1 else 0.0
        if impl == "torch":
            self.rnn = torch_module(cell, emb, hidden, layers, dropout=drop)
        elif impl == "ours":
            self.rnn = Recurrent(cell, emb, hidden, layers, dropout=drop)
        else:
            raise ValueError(f"impl must be 'torch' or 'ours', not {impl!r}")
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, vocab_size)
        if init_range > 0:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)

    def forward(self, x: torch.Tensor, state=None):
        emb = self.drop(self.embed(x.T))  # (T, B, E)
        out, state = self.rnn(emb, state)  # (T, B, H)
        # transpose the small hidden tensor, not the (vocabulary-wide) logits
        return self.decoder(self.drop(out.transpose(0, 1))), state  # (B, T, V)


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


@torch.no_grad()
def evaluate_stream(model: RNNLM, data: torch.Tensor, bptt: int, device) -> float:
    """Mean cross-entropy (nats per token) over a batchified (B, L) stream, state carried."""
    model.eval()
    total, count, state = 0.0, 0, None
    for i in range(0, data.shape[1] - 1, bptt):
        x, y = tbptt_window(data, i, bptt)
        logits, state = model(x.to(device), state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).to(device),
                                 reduction="sum").item()
        count += y.numel()
    model.train()
    return total / count


@dataclass
class LMConfig:
    corpus: str = "ptb"  # ptb | shakespeare | builtin-words | builtin-chars
    cell: str = "lstm"  # rnn | gru | lstm
    impl: str = "torch"  # torch (fused nn.LSTM etc.) | ours (the cells written from the notes)
    emb: int = 200  # embedding width
    hidden: int = 200  # hidden units per layer
    layers: int = 2  # stacked recurrent layers
    dropout: float = 0.0  # dropout on embeddings, between layers and before the decoder
    init_range: float = 0.1  # uniform init range for all weights (0: torch defaults)
    batch_size: int = 20  # parallel streams
    bptt: int = 20  # truncated-BPTT window (unroll length)
    epochs: float = 13.0  # passes over the training stream (fractions allowed)
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 20.0  # learning rate for the per-token mean loss (= Zaremba's 1.0 on a loss summed over 20 steps)
    lr_decay: float = 0.5  # multiply lr by this each epoch after decay_after
    decay_after: int = 4  # epochs at full lr
    clip: float = 0.25  # max global gradient norm of the mean loss (= Zaremba's 5 on the summed loss)
    eval_batch: int = 1  # streams when scoring valid/test (1 = the whole text in order)
    eval_every: int = 0  # steps between validation passes (0 = once per epoch)
    sample_chars: int = 500  # length of the passage sampled at the end (character corpora)
    ckpt_every: int = 500  # steps between checkpoints


def load_corpus(name: str):
    """Token-id tensors for train/valid/test and the vocabulary; characters or words by corpus."""
    if name == "ptb":
        sents = {s: T.ptb(s) for s in ("train", "valid", "test")}
        toks = {s: [w for sent in v for w in sent + ["<eos>"]] for s, v in sents.items()}
        vocab = T.Vocab.build(toks["train"], unk="<unk>")
        return {s: torch.tensor(vocab.encode(t)) for s, t in toks.items()}, vocab, " "
    if name in ("shakespeare", "builtin-chars"):
        text = T.shakespeare() if name == "shakespeare" else T.builtin_text()
        vocab = T.Vocab(sorted(set(text)))
        ids = torch.tensor(vocab.encode(text))
        n = int(0.9 * len(ids))
        return {"train": ids[:n], "valid": ids[n:], "test": ids[n:]}, vocab, ""
    if name == "builtin-words":
        sents = T.builtin_sentences()
        toks = [w for s in sents for w in s + ["<eos>"]]
        a, b = int(0.8 * len(toks)), int(0.9 * len(toks))
        counts = T.Vocab.build(toks[:a], min_count=2, specials=("<unk>",), unk="<unk>")
        parts = {"train": toks[:a], "valid": toks[a:b], "test": toks[b:]}
        return {s: torch.tensor(counts.encode(t)) for s, t in parts.items()}, counts, " "
    raise ValueError(f"unknown corpus {name!r}; use ptb, shakespeare, builtin-words or builtin-chars")


def train_lm(cfg: LMConfig, run: Run) -> dict[str, float]:
    """Truncated-BPTT training shared by every recurrent LM recipe; returns final metrics."""
    ids, vocab, sep = load_corpus(cfg.corpus)
    run.save_text("vocab.json", json.dumps({"itos": vocab.itos, "unk": vocab.unk, "sep": sep}))
    train = rank_rows(batchify(ids["train"], cfg.batch_size), run.rank, run.world_size)
    valid = batchify(ids["valid"], cfg.eval_batch)
    test = batchify(ids["test"], cfg.eval_batch)
    model = RNNLM(len(vocab), cfg.emb, cfg.hidden, cfg.layers, cfg.cell, cfg.dropout, cfg.impl, cfg.init_range)
    net = run.prepare(model)
    opt = (torch.optim.SGD(model.parameters(), lr=cfg.lr) if cfg.optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=cfg.lr))
    steps_per_epoch = (train.shape[1] - 1) // cfg.bptt
    total = max(1, int(cfg.epochs * steps_per_epoch))
    eval_every = cfg.eval_every or steps_per_epoch
    run.watch(model=model, optimizer=opt)
    start = run.restore()
    state = run.state.get("hidden")
    run.print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, vocab {len(vocab)}, "
              f"{steps_per_epoch} steps/epoch, {total} steps")
    tokens_per_step = cfg.batch_size * cfg.bptt
    for step in run.steps(total, unit="tok", items_per_step=tokens_per_step):
        epoch, w = divmod(step, steps_per_epoch)
        if w == 0:
            state = None  # each epoch starts the streams from a zero state
        lr = cfg.lr * cfg.lr_decay ** max(0, epoch + 1 - cfg.decay_after)
        set_lr(opt, lr)
        x, y = tbptt_window(train, w * cfg.bptt, cfg.bptt)
        x, y = x.to(run.device), y.to(run.device)
        with run.autocast():
            logits, state = net(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
        state = detach(state)  # truncate: the next window does not backpropagate into this one
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = clip_grad_norm(model.parameters(), cfg.clip)
        opt.step()
        run.state["hidden"] = state
        if step % 50 == 0 or step == total - 1:
            run.log(step, loss=loss.item(), grad_norm=gnorm, lr=lr)
        else:
            run.log_check(step, loss=loss.item())
        if (step + 1) % eval_every == 0 or step == total - 1:
            if run.is_main:
                v = evaluate_stream(model, valid, max(cfg.bptt, 35), run.device)
                run.log(step + 1, valid_loss=v, valid_ppl=math.exp(v), epoch=(step + 1) / steps_per_epoch)
    result = {}
    if run.is_main:
        v = evaluate_stream(model, valid, max(cfg.bptt, 35), run.device)
        t = evaluate_stream(model, test, max(cfg.bptt, 35), run.device)
        result = {"val_loss": v, "valid_ppl": math.exp(v), "test_loss": t, "test_ppl": math.exp(t),
                  "train_tokens": int(ids["train"].numel()), "steps": total,
                  "throughput": tokens_per_step * run.world_size * (run.step - start) / max(run.elapsed, 1e-9)}
        if sep == "":
            passage = generate(model, vocab, prompt="\n", length=cfg.sample_chars, temperature=0.8,
                               device=run.device, seed=0)
            run.save_text("sample.txt", passage)
    run.checkpoint()
    return result


@torch.no_grad()
def generate(model: RNNLM, vocab, prompt: str, length: int, temperature: float = 1.0, top_k: int = 0,
             device="cpu", seed: int = 0, sep: str = "") -> str:
    """Sample ``length`` tokens after ``prompt`` (characters, or words when ``sep`` is a space)."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    toks = prompt.split() if sep else list(prompt)
    ids = vocab.encode(toks) if toks else [0]
    state, x = None, torch.tensor([ids], device=device)
    out = []
    for _ in range(length):
        logits, state = model(x, state)
        logits = logits[0, -1].float().cpu() / max(temperature, 1e-6)
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, -float("inf"))
        nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
        out.append(nxt)
        x = torch.tensor([[nxt]], device=device)
    model.train()
    return prompt + (sep if sep and prompt else "") + vocab.decode(out, sep=sep)


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR``: rebuild the model from the run's config and latest checkpoint."""

    from ..engine.config import from_dict

    cfg = from_dict(LMConfig, saved["config"])
    meta = json.loads((run_dir / "vocab.json").read_text())
    vocab = T.Vocab(meta["itos"], unk=meta["unk"])
    weights = load_run_weights(run_dir)
    model = RNNLM(len(vocab), cfg.emb, cfg.hidden, cfg.layers, cfg.cell, 0.0, cfg.impl)
    model.load_state_dict(weights)
    prompt = args.prompt if args.prompt else ("\n" if meta["sep"] == "" else "the")
    return generate(model, vocab, prompt, args.length, args.temperature, args.top_k, seed=args.seed, sep=meta["sep"])


_QUICK_WORDS = {"corpus": "builtin-words", "epochs": 1.0, "hidden": 64, "emb": 64, "eval_batch": 10,
                "ckpt_every": 50}


@recipe("ptb-lstm-small", lecture=6, section="Recurrent architectures; backpropagation through time",
        config=LMConfig, datasets=("ptb",), presets={"quick": _QUICK_WORDS},
        target=Target("test_ppl", "<=", 120, "Zaremba et al. 2014, small config: 114.5"))
def ptb_lstm_small(cfg: LMConfig, run: Run) -> dict[str, float]:
    """Word-level 2x200 LSTM on Penn Treebank (Zaremba et al. small), truncated BPTT."""
    return train_lm(cfg, run)


@dataclass
class CharConfig(LMConfig):
    corpus: str = "shakespeare"
    emb: int = 64
    hidden: int = 256
    layers: int = 2
    init_range: float = 0.0
    batch_size: int = 32
    bptt: int = 100
    epochs: float = 4.0
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_decay: float = 0.7
    decay_after: int = 2
    clip: float = 1.0
    eval_batch: int = 16


_QUICK_CHARS = {"corpus": "builtin-chars", "epochs": 0.5, "hidden": 96, "bptt": 50, "ckpt_every": 50,
                "sample_chars": 200}

for _cell in ("rnn", "gru", "lstm"):
    def _make(cell=_cell):
        def shakespeare_char(cfg, run: Run) -> dict[str, float]:
            return train_lm(cfg, run)
        shakespeare_char.__doc__ = (f"Character-level 2-layer {cell.upper()} on Tiny Shakespeare: validation "
                                    f"loss (nats/char) and a sampled passage.")
        return recipe(f"shakespeare-char-{cell}", lecture=6, section="Recurrent architectures (RNN, GRU, LSTM)",
                      config=CharConfig, datasets=("shakespeare",),
                      presets={"full": {"cell": cell}, "quick": _QUICK_CHARS})(
            shakespeare_char)
    _make()
