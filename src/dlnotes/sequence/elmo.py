"""ELMo (Lecture 8): contextual embeddings from a bidirectional LSTM language model.

A forward LM reads left to right and predicts the next token, a backward LM reads right to left and
predicts the previous one; both are 2-layer LSTMs (``torch.nn.LSTM``, Lecture 6) over a shared token
embedding and share the output softmax:

    L = -(1/2T) sum_t [ log p(x_{t+1} | x_<=t ; fwd) + log p(x_{t-1} | x_>=t ; bwd) ]   (next-word prediction)

Each token k then has L + 1 = 3 representations ``h_{k,0} = [e_k; e_k]`` (the token embedding) and
``h_{k,j} = [fwd_j(k); bwd_j(k)]`` for layers j = 1, 2. A downstream task uses their softmax-weighted
mix times a scale, with ``s`` and ``gamma`` learned by that task:

    ELMo_k = gamma * sum_j softmax(w)_j h_{k,j}

Tokens are WordPiece pieces (the paper uses a character CNN; sub-words serve the same purpose of
having no out-of-vocabulary words). Perplexity is per piece, averaged over the two directions.

Training uses a sampled softmax, as the paper's biLM does (Jean et al., 2015): each step draws K
candidate words s_1..s_K from a proposal Q (here the training unigram distribution), with
replacement, and each position's loss is the cross-entropy over its own word y and the candidates,
whose logits o_j = u_j^T h + b_j are importance-weighted by their expected counts K Q(j):

    loss = -o_y + log( exp(o_y) + sum_{k: s_k != y} exp(o_{s_k} - log(K Q(s_k))) )

A candidate equal to y is masked out ("accidental hits"), so the sum estimates sum_{j != y} exp(o_j)
and the loss tends to the full softmax's -log p(y) as K grows (tested). The softmax layer then costs
K/V of the full one (V = 8000, K = 1024 by default; the full softmax took two thirds of a step here).
Validation perplexity always uses the full softmax. ``sampled=0`` trains with the full softmax.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Run, recipe
from ..engine.config import ConfigError
from ..engine.schedules import set_lr
from . import tokenize as TK
from .gpt2 import get_batch, lr_at, make_optimizer


@dataclass
class ELMoConfig:
    corpus: str = "english"  # english (Wikipedia part of english_corpus) | builtin (no download)
    wiki_files: int = 20  # training files wiki_00.. (validation: wiki_99)
    vocab_size: int = 8000  # WordPiece vocabulary
    emb: int = 256  # token embedding width (= hidden, so layer 0 is [e; e])
    hidden: int = 256  # LSTM hidden units per direction and layer
    layers: int = 2  # LSTM layers per direction
    dropout: float = 0.1  # between layers and before the softmax
    context: int = 64  # tokens per training window
    batch_size: int = 32  # windows per step
    iters: int = 4000  # optimisation steps
    lr: float = 2e-3  # peak Adam learning rate
    min_lr: float = 2e-4  # after cosine decay
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW decay on matrices
    sampled: int = 1024  # sampled-softmax candidates per step (0: full softmax)
    eval_windows: int = 200  # held-out windows for the final perplexity
    ckpt_every: int = 1000  # steps between checkpoints

    def check(self):
        if self.sampled < 0:
            raise ConfigError(f"sampled: {self.sampled} candidates; use a count > 0 (e.g. 1024) or 0 for the "
                              "full softmax")


class ScalarMix(nn.Module):
    """gamma * sum_j softmax(w)_j h_j over the L + 1 layers."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        s = torch.softmax(self.w, 0)
        return self.gamma * sum(s[j] * h for j, h in enumerate(layers))


class BiLM(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        if emb != hidden:
            raise ValueError("ELMo here uses emb == hidden so that layer 0 is [e; e]")
        self.embed = nn.Embedding(vocab, emb)
        # one nn.LSTM per layer and direction, so that every layer's states are available to the mix
        self.fwd = nn.ModuleList([nn.LSTM(emb if i == 0 else hidden, hidden, batch_first=True) for i in range(layers)])
        self.bwd = nn.ModuleList([nn.LSTM(emb if i == 0 else hidden, hidden, batch_first=True) for i in range(layers)])
        self.drop = nn.Dropout(dropout)
        self.softmax = nn.Linear(hidden, vocab)  # shared by both directions
        self.mix = ScalarMix(layers + 1)

    def layer_states(self, ids: torch.Tensor, reverse_index: torch.Tensor | None = None) -> list[torch.Tensor]:
        """ids (B, T) -> [h_0, .., h_L], each (B, T, 2H) = [forward; backward] states at every token.
        ``reverse_index`` (B, T) reverses each row's real tokens (padding stays at the end)."""
        if reverse_index is None:
            reverse_index = torch.arange(ids.shape[1], device=ids.device).flip(0).expand_as(ids)
        e = self.embed(ids)  # (B, T, E)
        flip = lambda x: torch.gather(x, 1, reverse_index[..., None].expand_as(x))  # noqa: E731
        out, f, b = [torch.cat([e, e], -1)], e, flip(e)
        for lf, lb in zip(self.fwd, self.bwd):
            f, _ = lf(self.drop(f))  # (B, T, H) reads left to right
            b, _ = lb(self.drop(b))  # (B, T, H) reads right to left (on the reversed sequence)
            out.append(torch.cat([f, flip(b)], -1))
        return out

    def lm_loss(self, ids: torch.Tensor, candidates: torch.Tensor | None = None,
                log_kq: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the forward (next token) and backward (previous token) cross-entropies; ids (B, T).
        With ``candidates`` (K,) drawn from Q and ``log_kq`` (V,) = log(K Q): the sampled softmax."""
        top = self.layer_states(ids)[-1]  # (B, T, 2H)
        h = top.shape[-1] // 2
        fwd = self.drop(top[:, :-1, :h]).reshape(-1, h)  # state at t predicts t + 1
        bwd = self.drop(top[:, 1:, h:]).reshape(-1, h)  # state at t predicts t - 1
        if candidates is None:
            lf = F.cross_entropy(self.softmax(fwd).float(), ids[:, 1:].reshape(-1))
            lb = F.cross_entropy(self.softmax(bwd).float(), ids[:, :-1].reshape(-1))
        else:
            lf = self.sampled_xent(fwd, ids[:, 1:].reshape(-1), candidates, log_kq)
            lb = self.sampled_xent(bwd, ids[:, :-1].reshape(-1), candidates, log_kq)
        return 0.5 * (lf + lb)

    def sampled_xent(self, h: torch.Tensor, y: torch.Tensor, cand: torch.Tensor, log_kq: torch.Tensor):
        """Sampled-softmax cross-entropy of states h (N, H) with targets y (N,) over candidates (K,)."""
        w, b = self.softmax.weight, self.softmax.bias
        true = (h * w[y]).sum(-1) + b[y]  # (N,)
        samp = h @ w[cand].T + b[cand] - log_kq[cand]  # (N, K)
        samp = samp.masked_fill(cand[None] == y[:, None], float("-inf"))  # accidental hits
        logits = torch.cat([true[:, None], samp], 1).float()
        return F.cross_entropy(logits, torch.zeros_like(y))


def build_model(cfg: ELMoConfig, vocab: int) -> BiLM:
    return BiLM(vocab, cfg.emb, cfg.hidden, cfg.layers, cfg.dropout)


def sentence_features(model: BiLM, ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mean over each sentence's real tokens of its ELMo vectors: (B, T) right-padded ids -> (B, 2H)."""
    real = ids != pad_id
    lengths = real.sum(1, keepdim=True)  # (B, 1)
    t = torch.arange(ids.shape[1], device=ids.device)[None]
    rev = torch.where(t < lengths, lengths - 1 - t, t)  # reverse the real part of each row
    elmo = model.mix(model.layer_states(ids, rev))  # (B, T, 2H)
    return (elmo * real[..., None]).sum(1) / lengths.clamp(min=1)


def token_stream(tok, cfg: ELMoConfig, held_out: bool) -> np.ndarray:
    if cfg.corpus == "builtin":
        paras = TK.builtin_paragraphs()
        cut = int(0.9 * len(paras))
        paras = paras[cut:] if held_out else paras[:cut]
    else:
        paras = list(TK.wiki_paragraphs(TK.wiki_files(cfg.wiki_files, held_out)))
    sep = tok.token_to_id("[SEP]")
    ids = []
    for e in tok.encode_batch(paras, add_special_tokens=False):
        ids.extend(e.ids + [sep])
    return np.asarray(ids, dtype=np.int64)


@torch.no_grad()
def evaluate(model: BiLM, data: torch.Tensor, context: int, windows: int) -> float:
    model.eval()
    n = (len(data) - 1) // context
    starts = torch.linspace(0, n - 1, min(n, windows)).long() * context
    device = model.softmax.weight.device
    losses = [model.lm_loss(torch.stack([data[s:s + context] for s in starts[a:a + 64].tolist()]).to(device)).item()
              for a in range(0, len(starts), 64)]
    model.train()
    return float(np.mean(losses))


def pretrain_elmo(cfg: ELMoConfig, run: Run) -> dict[str, float]:
    cfg.check()
    tok = TK.tokenizer_for("wordpiece", cfg.corpus, cfg.wiki_files, cfg.vocab_size)
    run.save_text("tokenizer.json", tok.to_str())
    train = torch.from_numpy(token_stream(tok, cfg, False))
    valid = torch.from_numpy(token_stream(tok, cfg, True))
    model = build_model(cfg, tok.get_vocab_size())
    net = run.prepare(model)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    run.watch(model=model, optimizer=opt)
    start = run.restore()
    q = torch.bincount(train, minlength=tok.get_vocab_size()).double() + 1.0  # unigram proposal (add-one)
    q /= q.sum()
    log_kq = torch.log(cfg.sampled * q).float().to(run.device)
    t0 = time.time()
    for step in run.steps(cfg.iters, unit="tok", items_per_step=cfg.batch_size * cfg.context):
        set_lr(opt, lr_at(step, cfg))
        x, _ = get_batch(train, cfg.batch_size, cfg.context - 1, seed=step * 7919 + run.rank)
        x = torch.cat([x, _[:, -1:]], 1)  # (B, context) window
        cand = None
        if cfg.sampled:
            g = torch.Generator().manual_seed(step * 7919 + run.rank + 1)
            cand = torch.multinomial(q, cfg.sampled, replacement=True, generator=g).to(run.device)
        with run.autocast():
            loss = (net.module if hasattr(net, "module") else net).lm_loss(x.to(run.device), cand, log_kq)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == cfg.iters - 1:
            run.log(step, **{"sampled_loss" if cfg.sampled else "loss": loss.item()}, lr=lr_at(step, cfg))
    train_s = time.time() - t0
    v = evaluate(model, valid, cfg.context, cfg.eval_windows)
    run.checkpoint()
    return {"val_loss": v, "val_ppl": math.exp(v), "train_tokens": len(train),
            "throughput": cfg.batch_size * cfg.context * (run.step - start) / max(train_s, 1e-9)}


def load_pretrained(run_dir: Path):
    """(model, tokenizer, config) from an elmo-pretrain run directory's latest checkpoint."""
    return TK.load_pretrained_run(run_dir, ELMoConfig, lambda cfg, tok: build_model(cfg, tok.get_vocab_size()))


@recipe("elmo-pretrain", lecture=8, section="ELMo", config=ELMoConfig, datasets=("english_corpus",),
        presets={"quick": {"corpus": "builtin", "vocab_size": 2000, "emb": 64, "hidden": 64, "context": 32,
                           "batch_size": 16, "iters": 60, "warmup": 10, "eval_windows": 20, "ckpt_every": 30}})
def elmo_pretrain(cfg: ELMoConfig, run: Run) -> dict[str, float]:
    """ELMo: 2-layer bidirectional LSTM language model (forward and backward next-word prediction)."""
    return pretrain_elmo(cfg, run)
