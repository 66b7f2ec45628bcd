"""BERT (Lecture 8): a Transformer encoder pretrained with masked-LM and next-sentence prediction.

Input: ``[CLS] A [SEP] B [SEP]`` in WordPiece tokens; each token's embedding is the sum of a token,
a learned position and a segment (A = 0, B = 1) embedding, followed by LayerNorm and dropout. The
encoder is Lecture 7's post-norm :class:`~dlnotes.sequence.transformer.TransformerEncoder` (GELU, padding
masked as keys); each layer's output is a contextual feature for every token.

Masked LM: 15% of the (non-special) positions are chosen; of those, 80% are replaced by ``[MASK]``, 10% by
a random token and 10% left unchanged, and the model predicts the original token there only:
``L_MLM = -mean_{chosen t} log p(x_t | x~)``, with a head ``LN(GELU(W h_t))`` -> logits tied to the token
embedding. Next-sentence prediction: B is the text that followed A (label 1) or text from another document
(label 0), half the time each; a tanh "pooler" on the ``[CLS]`` state feeds a 2-way classifier.
``L = L_MLM + L_NSP``.

By default A and B are one sentence each. ``pack=True`` builds the BERT paper's pretraining inputs
instead: spans of whole sentences packed to fill the input (see PairData). At this recipe's budget the
paper's inputs did worse. After the default 6000 steps, packed spans left the masked-LM loss on the
unigram plateau: 6.19 nats, on an H200, bf16. One sentence per segment reached 4.97, on an Intel CPU,
bf16, with the same model and schedule. At 2800 steps (AMD CPU, fp32) both were still on the plateau:
6.29 packed, 6.21 single; with bf16 the same CPU ran all 6000 single-sentence steps, and the training
loss left the plateau near step 3000, ending at 4.94 held out. Shorter inputs may let attention find
the neighbouring tokens sooner; a sentence averages 34 pieces, so a single-sentence input holds about
70 tokens. That cause is a guess, not measured. Pre-norm blocks (``x + f(LN(x))`` and a final LN;
Xiong et al. 2020 report that they train BERT faster) made no difference here: over the first 2000 of
the default 6000 steps their training masked-LM loss stayed within 0.02 nats of the post-norm one (mean
over steps 1500-1999: 6.40 against 6.39; Intel CPU, bf16), so the encoder keeps BERT's post-norm.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Run, recipe
from ..engine.schedules import set_lr
from . import tokenize as TK
from .gpt2 import lr_at, make_optimizer
from .transformer import TransformerEncoder

SENT_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


@dataclass
class BERTConfig:
    corpus: str = "english"  # english (Wikipedia part of english_corpus) | builtin (no download)
    wiki_files: int = 20  # training files wiki_00..; NSP/MLM validation on wiki_99
    vocab_size: int = 8000  # WordPiece vocabulary
    max_len: int = 128  # tokens per [CLS] A [SEP] B [SEP] input
    n_layers: int = 4  # encoder blocks
    n_heads: int = 4  # attention heads
    d_model: int = 256  # hidden width
    dropout: float = 0.1  # dropout on embeddings, attention, sublayers
    mask_prob: float = 0.15  # fraction of positions chosen for MLM
    batch_size: int = 32  # pairs per step
    iters: int = 6000  # optimisation steps
    lr: float = 5e-4  # peak AdamW learning rate
    min_lr: float = 5e-5  # after cosine decay
    warmup: int = 300  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW decay on matrices
    pack: bool = False  # True: segments are spans of whole sentences filling the input (the BERT paper's)
    eval_batches: int = 20  # held-out batches for the final MLM loss / NSP accuracy
    ckpt_every: int = 1000  # steps between checkpoints


# ----------------------------------------------------------------------------- model
class BERT(nn.Module):
    def __init__(self, vocab: int, max_len: int, n_layers: int, n_heads: int, d_model: int, dropout: float,
                 pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.tok = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        self.pos = nn.Embedding(max_len, d_model)
        self.seg = nn.Embedding(2, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(n_layers, d_model, n_heads, 4 * d_model, dropout, norm_first=False,
                                          activation="gelu")
        self.mlm_transform = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.LayerNorm(d_model))
        self.mlm_bias = nn.Parameter(torch.zeros(vocab))
        self.pooler = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh())
        self.nsp = nn.Linear(d_model, 2)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def features(self, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """ids, segments (B, T) -> contextual token features (B, T, d)."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.norm(self.tok(ids) + self.pos(pos)[None] + self.seg(segments)))  # (B, T, d)
        return self.encoder(x, key_padding_mask=ids == self.pad_id)

    def forward(self, ids, segments, chosen: torch.Tensor | None = None):
        """MLM logits (B, T, V), or (N, V) at the N positions where the bool mask ``chosen`` (B, T) is
        True: the loss needs only the ~15% masked positions, and the (d x V) output layer is the largest
        matrix product, so training skips it elsewhere (as Google's BERT code gathers them). NSP logits (B, 2)."""
        h = self.features(ids, segments)  # (B, T, d)
        nsp_logits = self.nsp(self.pooler(h[:, 0]))  # (B, 2) from [CLS]
        if chosen is not None:
            h = h[chosen]  # (N, d)
        mlm_logits = F.linear(self.mlm_transform(h), self.tok.weight, self.mlm_bias)  # (..., V)
        return mlm_logits, nsp_logits


# ----------------------------------------------------------------------------- masking and pairs
def mask_tokens(ids: torch.Tensor, special: torch.Tensor, vocab: int, mask_id: int, g: torch.Generator,
                prob: float = 0.15):
    """BERT's masking. ids (B, T); special (B, T) True at [CLS]/[SEP]/[PAD] (never chosen).
    Returns (inputs, labels) with labels = -100 where the position was not chosen."""
    chosen = (torch.rand(ids.shape, generator=g) < prob) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=g)
    inputs = ids.clone()
    inputs[chosen & (r < 0.8)] = mask_id  # 80%: [MASK]
    rand_pos = chosen & (r >= 0.8) & (r < 0.9)  # 10%: a random token
    inputs[rand_pos] = torch.randint(0, vocab, ids.shape, generator=g)[rand_pos]
    return inputs, labels  # the other 10% keep the original token


def split_sentences(paragraph: str) -> list[str]:
    return [s for s in SENT_RE.split(paragraph) if len(s.split()) >= 3]


class PairData:
    """Tokenised sentences grouped by document, and a builder of NSP pairs for a (seed, step).

    By default (``pack=False``) A is one sentence and B is the sentence after it in its document (label 1,
    "is next") or a sentence from another document (label 0). On our Wikipedia text such pairs leave 46% of
    a 128-token input as padding.

    With ``pack=True``, as in BERT's own data pipeline, a segment is a span of whole sentences instead:
    a chunk of a document is read from a random sentence until it holds ``max_len - 3`` tokens (with
    probability ``short_prob`` a random shorter target, so short inputs like fine-tuning sentences are seen
    too), A takes its first 1..k-1 sentences, and B is the rest of the chunk (label 1) or a span read from a
    random place in another document (label 0). If the pair is too long, the longer side loses tokens, A
    from its start and B from its end, so the A|B boundary is never cut."""

    def __init__(self, tok, documents, max_len: int, short_prob: float = 0.1, pack: bool = False):
        self.tok, self.max_len, self.short_prob, self.pack = tok, max_len, short_prob, pack
        self.pad, self.cls, self.sep = (tok.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]"))
        self.mask_id = tok.token_to_id("[MASK]")
        docs = [split_sentences(d) for d in documents]
        flat = [s for d in docs for s in d]
        self.sents = [e.ids for e in tok.encode_batch(flat, add_special_tokens=False)] if flat else []
        self.doc_of = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
        # a sentence can start an "is next" pair when the following sentence is in the same document
        self.has_next = np.nonzero(self.doc_of[:-1] == self.doc_of[1:])[0]
        if len(self.has_next) == 0:
            raise ValueError(f"NSP pairs need a document with two sentences of 3+ words; the {len(documents)} "
                             "documents given have none (check the corpus files, or pass whole documents)")
        self.doc_end = np.searchsorted(self.doc_of, self.doc_of, side="right")  # one past each doc's last sentence

    def span(self, start: int, need: int, at_least: int = 1) -> list[list[int]]:
        """Consecutive sentences of ``start``'s document from ``start`` until they hold ``need`` tokens
        (or the document ends); at least ``at_least`` sentences when the document has them."""
        out, n, i = [], 0, start
        while i < self.doc_end[start] and (n < need or len(out) < at_least):
            out.append(self.sents[i])
            n += len(self.sents[i])
            i += 1
        return out

    def batch(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        budget = self.max_len - 3
        first = rng.choice(self.has_next, n)
        is_next = rng.random(n) < 0.5
        target = np.where(rng.random(n) < self.short_prob, rng.integers(2, budget + 1, n), budget)
        if not self.pack:  # spans of 0 tokens hold their minimum: one sentence for B, two for the chunk A|B
            target[:] = 0
        split, other = rng.random(n), rng.integers(0, len(self.sents), n)
        ids = torch.full((n, self.max_len), self.pad, dtype=torch.long)
        seg = torch.zeros((n, self.max_len), dtype=torch.long)
        for r in range(n):
            chunk = self.span(first[r], target[r], at_least=2)
            k = 1 + int(split[r] * (len(chunk) - 1))  # sentences in A: 1 .. len(chunk) - 1
            A = [t for s in chunk[:k] for t in s]
            if is_next[r]:
                B = [t for s in chunk[k:] for t in s]
            else:
                o = other[r]
                if self.doc_of[o] == self.doc_of[first[r]]:  # another document, so B never follows A
                    o = self.doc_end[o] % len(self.sents)
                B = [t for s in self.span(o, target[r] - len(A)) for t in s]
            la = min(len(A), max(budget // 2, budget - len(B)))
            lb = min(len(B), budget - la)
            row = [self.cls] + A[len(A) - la:] + [self.sep] + B[:lb] + [self.sep]
            ids[r, :len(row)] = torch.tensor(row)
            seg[r, la + 2:len(row)] = 1
        special = (ids == self.pad) | (ids == self.cls) | (ids == self.sep)
        return ids, seg, special, torch.from_numpy(is_next.astype(np.int64))


def load_pairs(tok, cfg: BERTConfig, held_out: bool) -> PairData:
    if cfg.corpus == "builtin":
        paras = TK.builtin_paragraphs()
        cut = int(0.9 * len(paras))
        paras = paras[cut:] if held_out else paras[:cut]
    else:
        paras = list(TK.wiki_paragraphs(TK.wiki_files(cfg.wiki_files, held_out), documents=True))  # articles
    return PairData(tok, paras, cfg.max_len, pack=cfg.pack)


def bert_losses(model: BERT, data: PairData, n: int, seed: int, vocab: int, prob: float, device):
    ids, seg, special, nsp_label = data.batch(n, seed)
    g = torch.Generator().manual_seed(seed + 1)
    inputs, labels = mask_tokens(ids, special, vocab, data.mask_id, g, prob)
    chosen = (labels != -100).to(device)
    mlm_logits, nsp_logits = model(inputs.to(device), seg.to(device), chosen)  # (N, V): masked positions only
    mlm = F.cross_entropy(mlm_logits.float(), labels.to(device)[chosen])
    nsp = F.cross_entropy(nsp_logits.float(), nsp_label.to(device))
    nsp_acc = (nsp_logits.argmax(-1).cpu() == nsp_label).float().mean().item()
    return mlm, nsp, nsp_acc


def pretrain_bert(cfg: BERTConfig, run: Run) -> dict[str, float]:
    tok = TK.tokenizer_for("wordpiece", cfg.corpus, cfg.wiki_files, cfg.vocab_size)
    run.save_text("tokenizer.json", tok.to_str())
    train, valid = load_pairs(tok, cfg, False), load_pairs(tok, cfg, True)
    vocab = tok.get_vocab_size()
    model = build_model(cfg, vocab, train.pad)
    net = run.prepare(model)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    run.watch(model=model, optimizer=opt)
    start = run.restore()
    run.print(f"BERT: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
              f"{len(train.sents)} training sentences, vocab {vocab}")
    t0 = time.time()
    for step in run.steps(cfg.iters, unit="pair", items_per_step=cfg.batch_size):
        set_lr(opt, lr_at(step, cfg))
        with run.autocast():
            mlm, nsp, acc = bert_losses(net, train, cfg.batch_size, step * 7919 + run.rank, vocab, cfg.mask_prob,
                                        run.device)
        loss = mlm + nsp
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == cfg.iters - 1:
            run.log(step, loss=loss.item(), mlm_loss=mlm.item(), nsp_loss=nsp.item(), nsp_acc=acc)
        else:
            run.log_check(step, loss=loss.item())
    train_s = time.time() - t0
    model.eval()
    with torch.no_grad():
        stats = [bert_losses(model, valid, cfg.batch_size, 10_000_000 + i, vocab, cfg.mask_prob, run.device)
                 for i in range(cfg.eval_batches)]
    model.train()
    run.checkpoint()
    mlm_v = float(np.mean([s[0].item() for s in stats]))
    return {"mlm_loss": mlm_v, "mlm_ppl": math.exp(mlm_v), "nsp_accuracy": float(np.mean([s[2] for s in stats])),
            "throughput": cfg.batch_size * cfg.max_len * (run.step - start) / max(train_s, 1e-9)}


def build_model(cfg: BERTConfig, vocab: int, pad_id: int) -> BERT:
    """A freshly initialised BERT of ``cfg``'s shape (pretraining, and the fine-tuning recipe's scratch copy)."""
    return BERT(vocab, cfg.max_len, cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.dropout, pad_id)


def load_pretrained(run_dir: Path):
    """(model, tokenizer, config) from a bert-pretrain run directory's latest checkpoint."""
    return TK.load_pretrained_run(run_dir, BERTConfig,
                                  lambda cfg, tok: build_model(cfg, tok.get_vocab_size(), tok.token_to_id("[PAD]")))


@recipe("bert-pretrain", lecture=8, section="BERT", config=BERTConfig, datasets=("english_corpus",),
        presets={"quick": {"corpus": "builtin", "vocab_size": 2000, "max_len": 64, "n_layers": 2, "d_model": 64,
                           "n_heads": 2, "batch_size": 16, "iters": 60, "warmup": 10, "eval_batches": 3,
                           "ckpt_every": 30}})
def bert_pretrain(cfg: BERTConfig, run: Run) -> dict[str, float]:
    """Small BERT (post-norm encoder, WordPiece) pretrained with masked LM (15%, 80/10/10) and NSP."""
    return pretrain_bert(cfg, run)
