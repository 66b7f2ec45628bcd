"""GPT-2 (Lecture 8): a causal Transformer language model over byte-level BPE tokens.

The model is Lecture 7's :class:`dlnotes.sequence.transformer.GPT` (token + learned position embeddings,
pre-norm blocks with *masked* (auto-regressive) self-attention, a final LayerNorm, logits tied to the
token embedding). Token t may only attend to tokens ``<= t``, so the model factorises

    p(x_1 .. x_T) = prod_t p(x_t | x_<t),    L = -(1/T) sum_t log p(x_t | x_<t)

and validation perplexity is ``exp(L)`` per BPE token on the held-out ``wiki_99``. Training draws random
windows of ``context + 1`` tokens (a pure function of the seed and step) and uses AdamW with warm-up
and cosine decay.

Generation samples ``x_{t+1} ~ softmax(logits / temperature)`` restricted to the ``top_k`` most likely
tokens and/or to the nucleus: the smallest set whose probabilities sum to at least ``top_p``
(Holtzman et al. 2019). ``dlnotes sample RUN_DIR --temperature 0.8 --top-k 40`` prints a continuation.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import cache_dir
from ..engine import Run, recipe
from ..engine.schedules import set_lr, warmup_cosine
from . import tokenize as TK
from .transformer import GPT


@dataclass
class GPT2Config:
    corpus: str = "english"  # english (Wikipedia part of english_corpus) | builtin (no download)
    wiki_files: int = 20  # training files wiki_00.. (validation: wiki_99)
    vocab_size: int = 8000  # byte-level BPE vocabulary
    context: int = 128  # tokens of context
    n_layers: int = 4  # Transformer blocks
    n_heads: int = 4  # attention heads
    d_model: int = 256  # residual width
    dropout: float = 0.1  # dropout on embeddings, attention and sublayer outputs
    batch_size: int = 32  # windows per step
    iters: int = 6000  # optimisation steps
    lr: float = 1e-3  # peak AdamW learning rate
    min_lr: float = 1e-4  # after cosine decay
    warmup: int = 200  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW decay on matrices
    eval_every: int = 1000  # steps between validation estimates
    eval_windows: int = 200  # held-out windows for the final perplexity (0 = all)
    temperature: float = 0.8  # sampling temperature for the sample written at the end
    top_k: int = 0  # keep the k most likely tokens (0: off)
    top_p: float = 0.9  # nucleus: keep the smallest set with probability >= top_p (1: off)
    amp: str = "none"  # none | bf16 autocast
    ckpt_every: int = 1000  # steps between checkpoints


def encoded_corpus(tok, corpus: str, wiki: int, held_out: bool) -> np.ndarray:
    """One long stream of BPE ids, paragraphs separated by <|endoftext|>; cached as .npy."""
    if corpus == "builtin":
        paras = TK.builtin_paragraphs()
        cut = int(0.9 * len(paras))
        texts, key = (paras[cut:] if held_out else paras[:cut]), f"builtin-{held_out}"
    else:
        files = TK.wiki_files(wiki, held_out)
        texts, key = TK.wiki_paragraphs(files), json.dumps(files)
    import hashlib
    import os
    # the whole tokenizer in the key: its JSON opens with the same settings for every vocabulary, so a prefix
    # of it named two tokenizers' streams alike and a run could read another tokenizer's ids
    h = hashlib.sha1(json.dumps([key, tok.to_str(), tok.get_vocab_size()]).encode()).hexdigest()[:16]
    file = cache_dir() / f"bpe_ids_{h}.npy"
    if file.exists():
        return np.load(file)
    eot = tok.token_to_id(TK.GPT_EOT)
    ids: list[int] = []
    batch: list[str] = []
    for t in list(texts) + [None]:
        if t is not None:
            batch.append(t)
        if len(batch) == 2000 or (t is None and batch):
            for e in tok.encode_batch(batch):
                ids.extend(e.ids)
                ids.append(eot)
            batch = []
    arr = np.asarray(ids, dtype=np.int32)
    tmp = file.with_name(f".{file.stem}.tmp{os.getpid()}.npy")
    np.save(tmp, arr)
    os.replace(tmp, file)
    return arr


def get_batch(data: torch.Tensor, batch: int, context: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(data) - context - 1, (batch,), generator=g)
    w = torch.stack([data[s:s + context + 1] for s in starts.tolist()]).long()  # (B, T+1)
    return w[:, :-1], w[:, 1:]


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to ``cfg.min_lr`` at ``cfg.iters``."""
    return warmup_cosine(step, cfg.iters, cfg.lr, cfg.min_lr, cfg.warmup)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95))


@torch.no_grad()
def evaluate(model: GPT, data: torch.Tensor, context: int, max_windows: int = 0, batch: int = 64) -> float:
    """Mean next-token loss (nats) over non-overlapping windows of the held-out stream."""
    model.eval()
    n = (len(data) - 1) // context
    idx = torch.arange(n) if not max_windows or n <= max_windows else torch.linspace(0, n - 1, max_windows).long()
    total, count = 0.0, 0
    for a in range(0, len(idx), batch):
        starts = idx[a:a + batch] * context
        w = torch.stack([data[s:s + context + 1] for s in starts.tolist()]).long().to(next(model.parameters()).device)
        logits, _ = model(w[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), w[:, 1:].reshape(-1),
                                 reduction="sum").item()
        count += w[:, 1:].numel()
    model.train()
    return total / max(count, 1)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Logits (V,) -> scaled logits with everything outside the top-k and the nucleus set to -inf."""
    logits = logits.float() / max(temperature, 1e-6)
    if top_k and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if top_p < 1.0:
        probs, order = torch.sort(torch.softmax(logits, -1), descending=True)
        before = probs.cumsum(0) - probs  # mass of the tokens ranked above each one
        drop = before >= top_p  # keep tokens until the running mass reaches top_p
        logits = logits.clone()
        logits[order[drop]] = -float("inf")
    return logits


@torch.no_grad()
def generate(model: GPT, ids: list[int], length: int, temperature=1.0, top_k=0, top_p=1.0, seed=0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    model.eval()
    x = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
    for _ in range(length):
        logits, _ = model(x[:, -model.context:])
        probs = torch.softmax(filter_logits(logits[0, -1].float(), temperature, top_k, top_p), -1).cpu()
        x = torch.cat([x, torch.multinomial(probs, 1, generator=g)[None].to(x.device)], 1)  # CPU draws: same on any device
    model.train()
    return x[0].tolist()


def build_model(cfg: GPT2Config, vocab: int) -> GPT:
    return GPT(vocab, cfg.context, cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.dropout, bias=True)


def pretrain_gpt2(cfg: GPT2Config, run: Run) -> dict[str, float]:
    tok = TK.tokenizer_for("bytebpe", cfg.corpus, cfg.wiki_files, cfg.vocab_size)
    run.save_text("tokenizer.json", tok.to_str())
    train = torch.from_numpy(encoded_corpus(tok, cfg.corpus, cfg.wiki_files, False).astype(np.int64))
    valid = torch.from_numpy(encoded_corpus(tok, cfg.corpus, cfg.wiki_files, True).astype(np.int64))
    model = build_model(cfg, tok.get_vocab_size())
    net = run.prepare(model)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    run.watch(model=model, optimizer=opt)
    start = run.restore()
    run.print(f"GPT-2: {model.num_params() / 1e6:.2f}M parameters, {len(train)} training tokens, "
              f"{len(valid)} held-out tokens, vocab {tok.get_vocab_size()}")
    t0 = time.time()
    for step in run.steps(cfg.iters, unit="tok", items_per_step=cfg.batch_size * cfg.context):
        set_lr(opt, lr_at(step, cfg))
        x, y = get_batch(train, cfg.batch_size, cfg.context, seed=step * 7919 + run.rank)
        with run.autocast():
            _, loss = net(x.to(run.device), y.to(run.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == cfg.iters - 1:
            run.log(step, loss=loss.item(), lr=lr_at(step, cfg))
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and run.is_main:
            v = evaluate(model, valid, cfg.context, 50)
            run.log(step + 1, val_loss=v, val_ppl=math.exp(v))
    train_s = time.time() - t0
    v = evaluate(model, valid, cfg.context, cfg.eval_windows)
    prompt = "The history of"
    text = tok.decode(generate(model, tok.encode(prompt).ids, 60, cfg.temperature, cfg.top_k, cfg.top_p))
    run.save_text("sample.txt", text + "\n")
    run.checkpoint()
    return {"val_loss": v, "val_ppl": math.exp(v), "train_tokens": len(train),
            "throughput": cfg.batch_size * cfg.context * (run.step - start) / max(train_s, 1e-9)}


def load_pretrained(run_dir: Path):
    """(model, tokenizer, config) from a gpt2 run directory's latest checkpoint."""
    return TK.load_pretrained_run(run_dir, GPT2Config, lambda cfg, tok: build_model(cfg, tok.get_vocab_size()))


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR [--prompt ..] [--temperature ..] [--top-k ..]``; nucleus top_p from the
    run's config (or ``args.top_p`` when the CLI provides it)."""
    model, tok, cfg = load_pretrained(run_dir)
    top_p = getattr(args, "top_p", None) or cfg.top_p
    ids = tok.encode(args.prompt or "The").ids
    return tok.decode(generate(model, ids, args.length, args.temperature, args.top_k, top_p, args.seed))


@recipe("gpt2-pretrain", lecture=8, section="GPT-2", config=GPT2Config, datasets=("english_corpus",),
        presets={"quick": {"corpus": "builtin", "vocab_size": 2000, "context": 64, "n_layers": 2, "d_model": 64,
                           "n_heads": 2, "batch_size": 16, "iters": 60, "warmup": 10, "eval_every": 0,
                           "eval_windows": 20, "ckpt_every": 30}})
def gpt2_pretrain(cfg: GPT2Config, run: Run) -> dict[str, float]:
    """Small GPT-2 (causal Transformer, byte-level BPE) on Wikipedia; held-out perplexity and samples."""
    return pretrain_gpt2(cfg, run)
