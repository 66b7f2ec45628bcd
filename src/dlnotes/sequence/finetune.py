"""Fine-tuning pretrained language models on SST-2 (Lecture 8), against the same model from scratch and a
bag-of-words logistic regression.

A classification head ``softmax(W z + b)`` over two sentiment classes reads one feature vector ``z`` per
sentence: GPT-2's last-token state (the only one that has seen the whole sentence under causal attention;
``pool=mean`` averages the real tokens' states instead, which did no better on held-out training sentences;
``pool=eot`` reads an ``<|endoftext|>`` appended to the sentence, as GPT-1 reads its extract token),
BERT's pooled ``[CLS]`` state (``pool=mean``: the mean of its real tokens' states, bypassing the pooler that only
NSP trained; no better either), or ELMo's mean over tokens of its softmax-weighted layer mix. All weights are
trained with AdamW on the cross-entropy (peak rate 1e-4 for the Transformers, 2e-3 for ELMo's LSTMs, which
underfit at 1e-4); "scratch" is the identical architecture with random weights, trained the same way,
so the difference in dev accuracy is what pretraining bought. The baseline is logistic regression on binary
unigram+bigram counts.

ELMo's recipe first adapts its biLM to the task's text, as Peters et al. (2018, sec. 3.4) do: one pass of the
biLM's own loss over SST-2's training sentences, labels dropped (:func:`adapt_lm`; ``adapt_epochs``, available
to all three models). The adaptation reads only training text; it belongs to the pretrained copy's pretraining.
Several passes of it are Gururangan et al.'s (2020) task-adaptive pretraining; for GPT-2 they raised the pretrained
copy on held-out training sentences but not on dev, so GPT-2's preset does not adapt.
GPT-2 can also keep its language-model loss while fine-tuning, ``L3 = L2 + lambda L1`` (Radford et al. 2018,
eq. 5; ``lm_coef`` = lambda, off in the preset), with one pass of the blocks feeding both heads. The Transformers
can fine-tune with layer-wise rates (Howard & Ruder's 2018 discriminative fine-tuning; ``layer_decay`` = d): the
head and final norm at the peak rate, each block below it d times the one above, the embeddings lowest
(:func:`layerwise_optimizer`); off in the presets, it did no better on held-out training sentences. With
``probe`` both copies fine-tune as in Kumar et al.'s (2022) LP-FT: the head is first fitted alone, a logistic
regression on the frozen model's features (:func:`probe_head`), so the first fine-tuning steps do not push a
random head's gradients into the pretrained features. It raised GPT-2's and BERT's pretrained copies on held-out
training sentences but not on dev, so the presets leave it off.
With ``l2sp`` = alpha the pretrained copy fine-tunes under Li et al.'s (2018) L2-SP, which pulls the language
model's weights toward their pretrained values ``w0`` rather than toward zero: the penalty
``alpha/2 ||w - w0||^2``, applied decoupled from Adam's moment estimates as AdamW applies weight decay
(Loshchilov & Hutter 2019), i.e. after each step ``w <- w - lr_t alpha (w - w0)`` (:func:`finetune`).
AdamW's small decay toward zero stays on every matrix, and the new head has only that. L2-SP is defined by the
pretrained starting point, so the scratch copy trains as before. At alpha 1-3 it moved GPT-2's pretrained copy by
0-0.4 points on held-out training sentences (alpha 10 and 100 lowered it), so the preset leaves it off.
With ``bos`` GPT-2 reads an ``<|endoftext|>`` before each sentence, the token that precedes every paragraph in
its pretraining stream, so the first word is read as the start of a text; it moved both copies alike on held-out
training sentences, so the preset leaves it off.

SST-2's sentences come Penn-Treebank tokenized and lower-cased (``it 's``, ``does n't``, ``( sigh )``); the
language models were pretrained on raw Wikipedia text, where those read ``it's``, ``doesn't``, ``(sigh)``.
With ``detokenize`` (the default) both copies of the model read the sentences de-tokenized
(:func:`dlnotes.sequence.tokenize.ptb_detokenize`), as Radford et al. (2019) do for GPT-2 on tokenized
benchmarks; the bag-of-words baseline keeps the original tokens.

One fine-tune's dev accuracy moves by about a point with its seed (the head's initial weights, dropout, batch
order), as much as the gain it is meant to measure; ``seeds=N`` fine-tunes each copy N times from the same
pretrained weights and reports the mean accuracies, the mean gain and the spread of the per-seed gains.

Settings are chosen without dev: ``holdout=N`` (:func:`dlnotes.sequence.sst2.hold_out_sentences`) holds N whole
training sentences out, with every phrase that only they contain, and reports all three accuracies on them instead.

Each recipe ``sst2-<model>`` pretrains (in ``<run>/pretrain``) unless ``pretrained`` names a finished
pretraining run, then fine-tunes both copies and fits the baseline; the result holds all three accuracies.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import text as T
from ..engine import Run, Target, recipe
from ..engine.config import ConfigError
from ..engine.schedules import set_lr, warmup_cosine
from ..selfsup.probe import fit_logreg
from . import bert as B
from . import gpt2 as G
from .sst2 import (bag_of_words_accuracy, encode_sst2, hold_out_sentences, length_grouped_batches, pad_batch,
                   training_sentences)
from . import tokenize as TK


class Classifier(nn.Module):
    """A language model's sentence feature -> linear layer -> 2 logits."""

    def __init__(self, kind: str, lm: nn.Module, width: int, pad_id: int, dropout: float = 0.1, pool: str = "last",
                 bos: bool = False):
        super().__init__()
        self.kind, self.lm, self.pad_id, self.pool, self.bos = kind, lm, pad_id, pool, bos
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.forward_with_lm(ids, lm_loss=False)[0]

    def _mean_of_real(self, h: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, d) token states -> (B, d) mean over each sentence's non-padding tokens."""
        return (h * (ids != self.pad_id)[..., None]).sum(1) / lengths[:, None].to(h.dtype)

    def forward_with_lm(self, ids: torch.Tensor, lm_loss: bool = True):
        """(class logits, GPT-2's mean next-token loss over the sentences' real tokens or None): one pass of
        the blocks feeds both the classification head and the tied LM head, as in Radford et al. (2018)."""
        z, lm = self.features(ids, lm_loss)
        return self.head(self.drop(z)), lm

    def features(self, ids: torch.Tensor, lm_loss: bool = False):
        """((B, width) sentence features z the head reads, the auxiliary LM loss as in forward_with_lm)."""
        lengths, lm = (ids != self.pad_id).sum(1), None  # (B,)
        if self.kind == "gpt2":
            m, lead, tail = self.lm, int(self.bos), int(self.pool == "eot")
            if lead or tail:  # <|endoftext|> (the padding id) columns: before row b's sentence, after it, or both
                ids = F.pad(ids[:, :m.context - lead - tail], (lead, tail), value=self.pad_id)
                lengths = lengths.clamp(max=m.context - lead - tail)
            h = m.blocks(m.drop(m.pos(m.tok_embed(ids))))  # (B, T, C); right padding cannot leak backwards
            if self.pool == "mean":  # mean of the real tokens' states (each has seen its own prefix)
                z = self._mean_of_real(h, ids, lengths)
            else:  # last real token (index lead + lengths - 1), or the <|endoftext|> after it
                z = h[torch.arange(len(ids), device=ids.device), lead + lengths - 1 + tail]
            if lm_loss:  # predict token t+1 from h_t wherever t+1 is a real token (indices lead..lead+lengths-1)
                logits = F.linear(h[:, :-1], m.tok_embed.weight) if m.head is None else m.head(h[:, :-1])
                real = torch.arange(1, ids.shape[1], device=ids.device) < lead + lengths[:, None]  # (B, T-1)
                lm = F.cross_entropy(logits[real].float(), ids[:, 1:][real])
        elif lm_loss:
            raise ConfigError(f"lm_coef: the auxiliary language-model loss is GPT-2's (Radford et al. 2018); "
                              f"{self.kind} fine-tunes with lm_coef=0")
        elif self.kind == "bert":
            h = self.lm.features(ids, torch.zeros_like(ids))  # (B, T, d)
            if self.pool == "mean":  # mean of the real tokens' states ([CLS] and [SEP] included), no pooler
                z = self._mean_of_real(h, ids, lengths)
            else:
                z = self.lm.pooler(h[:, 0])  # [CLS]
        else:  # elmo
            from .elmo import sentence_features
            z = sentence_features(self.lm, ids, self.pad_id)
        return z, lm


@torch.no_grad()
def accuracy(model: Classifier, seqs, labels, pad_id: int, batch: int = 128) -> float:
    model.eval()
    correct, device = 0, model.head.weight.device
    for a in range(0, len(seqs), batch):
        logits = model(pad_batch(seqs[a:a + batch], pad_id).to(device))
        correct += int((logits.argmax(-1).cpu() == labels[a:a + batch]).sum())
    model.train()
    return correct / len(seqs)


@dataclass
class FinetuneConfig:
    model: str = "gpt2"  # gpt2 | bert | elmo
    pretrained: str = ""  # a finished pretraining run directory ("" = pretrain here first)
    pretrain_set: str = ""  # overrides for the pretraining config when pretraining here: "key=value,key=value"
    train_size: int = 0  # SST-2 training sentences to use (0 = all 67k)
    dev_size: int = 0  # dev sentences (0 = all 872)
    max_len: int = 64  # tokens per sentence
    epochs: float = 2.0  # passes over the training sentences
    batch_size: int = 32  # sentences per step
    lr: float = 1e-4  # AdamW peak learning rate (same for pretrained and scratch)
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.01  # AdamW decay on matrices
    dropout: float = 0.1  # before the classification head
    adapt_epochs: float = 0.0  # passes of the LM's own objective over SST-2's training sentences, labels dropped,
    #                            before the pretrained copy fine-tunes (Peters et al. 2018, sec. 3.4); 0: none
    adapt_lr: float = 1e-3  # AdamW peak learning rate of that adaptation
    lm_coef: float = 0.0  # GPT-2: weight lambda of the auxiliary next-token loss on the task's sentences while
    #                       fine-tuning, L2 + lambda L1 (Radford et al. 2018 use 0.5); both copies alike; 0: none
    layer_decay: float = 1.0  # GPT-2 and BERT: layer-wise rates, lr * layer_decay^(L + 1 - depth) for depth 0
    #                           (embeddings) .. L (the last block), lr for the head (Howard & Ruder 2018); 1: one rate
    probe: bool = False  # LP-FT (Kumar et al. 2022): fit the head alone on the frozen model's features first,
    #                      then fine-tune all weights; both copies alike
    probe_l2: float = 5e-4  # weight of that logistic regression's penalty probe_l2 * ||W||^2
    l2sp: float = 0.0  # pretrained copy only: weight alpha of L2-SP (Li et al. 2018), each step pulls the LM's weights
    #                    lr_t * alpha of the way back to their pretrained values (decoupled, as AdamW's decay); 0: off
    pool: str = "last"  # sentence feature: last (GPT-2's last real token, BERT's pooled [CLS]) | mean (over real
    #                     tokens; GPT-2 and BERT) | eot (GPT-2: the state of an <|endoftext|> appended to the sentence)
    bos: bool = False  # GPT-2: an <|endoftext|> before each sentence, as before every paragraph in pretraining, so
    #                    the first word is read as the start of a text rather than from no context; both copies alike
    detokenize: bool = True  # undo SST-2's PTB tokenization ("does n't" -> "doesn't") before sub-word encoding
    holdout: int = 0  # > 0: hold this many whole SST-2 training sentences out (with the phrases only they contain)
    #                   and report accuracy on them instead of on dev, to choose settings without dev
    holdout_seed: int = 0  # which sentences are held out
    seeds: int = 1  # fine-tune each copy this many times (seeds 0..seeds-1: head, dropout and batch order; scratch
    #                 also its initial weights) and report the mean accuracies; one seed's gain moves by about a point
    ckpt_every: int = 0  # (fine-tuning is short; checkpoints only at the end)

    def check(self):
        if self.adapt_epochs < 0:
            raise ConfigError(f"adapt_epochs: {self.adapt_epochs}; use 0 (no adaptation) or a positive number of "
                              "passes over the training sentences (e.g. 1)")
        if self.lm_coef < 0 or (self.lm_coef > 0 and self.model != "gpt2"):
            raise ConfigError(f"lm_coef: {self.lm_coef} with model={self.model}; the auxiliary language-model loss "
                              f"is GPT-2's: use a weight >= 0 (e.g. 0.5) with model=gpt2, else 0")
        if self.holdout < 0:
            raise ConfigError(f"holdout: {self.holdout}; use 0 (report dev accuracy) or a number of whole training "
                              "sentences to hold out and report instead (e.g. 1500)")
        if self.adapt_epochs > 0 and self.adapt_lr <= 0:
            raise ConfigError(f"adapt_lr: {self.adapt_lr}; the adaptation needs a positive learning rate (e.g. 1e-3)")
        if (self.pool not in ("last", "mean", "eot") or (self.pool == "mean" and self.model == "elmo")
                or (self.pool == "eot" and self.model != "gpt2")):
            raise ConfigError(f"pool: {self.pool!r} with model={self.model}; GPT-2 reads its sentence feature from "
                              "the last real token (last), an <|endoftext|> appended to it (eot) or the mean over "
                              "real tokens (mean), BERT from [CLS] (last) or the mean; ELMo always averages its "
                              "tokens: use last")
        if not 0.0 < self.layer_decay <= 1.0 or (self.layer_decay < 1.0 and self.model == "elmo"):
            raise ConfigError(f"layer_decay: {self.layer_decay} with model={self.model}; layer-wise rates are for "
                              "the Transformers' blocks: a factor in (0, 1] (e.g. 0.8) with gpt2 or bert, else 1")
        if self.bos and self.model != "gpt2":
            raise ConfigError(f"bos: true with model={self.model}; the leading <|endoftext|> is GPT-2's (BERT "
                              "already starts each sentence with [CLS]): use bos=false")
        if self.probe_l2 < 0:
            raise ConfigError(f"probe_l2: {self.probe_l2}; the linear probe's L2 weight is >= 0 (e.g. 5e-4)")
        if not 0.0 <= self.l2sp * self.lr <= 1.0:
            raise ConfigError(f"l2sp: {self.l2sp} with lr={self.lr}; each step pulls the weights lr * l2sp of the way "
                              "back to their pretrained values: use 0 (off) or a weight with lr * l2sp <= 1 "
                              "(e.g. 100 at lr 1e-4)")
        if self.seeds < 1:
            raise ConfigError(f"seeds: {self.seeds}; fine-tune each copy at least once (1, or e.g. 3 for a mean)")


def _pretrain_here(cfg: FinetuneConfig, run: Run) -> Path:
    """Run the model's pretraining recipe into ``<run>/pretrain`` and return that directory."""
    import json

    from ..engine import config as C
    from ..engine.recipes import get

    name = {"gpt2": "gpt2-pretrain", "bert": "bert-pretrain", "elmo": "elmo-pretrain"}[cfg.model]
    rec = get(name)
    pcfg = rec.make_config("full")
    C.apply_overrides(pcfg, [kv for kv in cfg.pretrain_set.split(",") if kv.strip()])
    sub = run.dir / "pretrain"
    (sub / "checkpoints").mkdir(parents=True, exist_ok=True)
    (sub / "config.json").write_text(json.dumps({"recipe": name, "preset": "full", "seed": 0,
                                                 "config": C.to_dict(pcfg)}, indent=2))
    prun = Run(sub, device=str(run.device), amp=run.amp, ckpt_every=getattr(pcfg, "ckpt_every", 0), quiet=True,
               meta={"recipe": name})
    result = rec.fn(pcfg, prun)
    prun.close()
    (sub / "result.json").write_text(json.dumps(result, indent=2))
    return sub


def load_lm(kind: str, run_dir: Path):
    if kind == "gpt2":
        model, tok, cfg = G.load_pretrained(run_dir)
        return model, tok, cfg.d_model, tok.token_to_id(G.TK.GPT_EOT), lambda: G.build_model(cfg, tok.get_vocab_size())
    if kind == "bert":
        model, tok, cfg = B.load_pretrained(run_dir)
        pad = tok.token_to_id("[PAD]")
        return model, tok, cfg.d_model, pad, lambda: B.build_model(cfg, tok.get_vocab_size(), pad)
    from . import elmo as E
    model, tok, cfg = E.load_pretrained(run_dir)
    return model, tok, 2 * cfg.hidden, tok.token_to_id("[PAD]"), lambda: E.build_model(cfg, tok.get_vocab_size())


def lm_objective(kind: str, lm: nn.Module, tok, batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The loss each model was pretrained with, on one batch of its adaptation data: ELMo's forward + backward
    next-token loss and GPT-2's next-token loss on (B, T) windows of a token stream; BERT's masked-LM loss on
    (B, T) padded [CLS] sentence [SEP] rows (one segment each, so no next-sentence pairs)."""
    if kind == "elmo":
        return lm.lm_loss(batch)
    if kind == "gpt2":
        return lm(batch[:, :-1], batch[:, 1:])[1]
    ids = batch
    special = (ids == tok.token_to_id("[CLS]")) | (ids == tok.token_to_id("[SEP]")) | (ids == lm.pad_id)
    inputs, labels = B.mask_tokens(ids.cpu(), special.cpu(), tok.get_vocab_size(), tok.token_to_id("[MASK]"), g)
    chosen = (labels != -100).to(ids.device)
    logits, _ = lm(inputs.to(ids.device), torch.zeros_like(ids), chosen)
    return F.cross_entropy(logits.float(), labels.to(ids.device)[chosen])


def adapt_lm(kind: str, lm: nn.Module, tok, sentences: list[str], cfg: FinetuneConfig, run: Run) -> dict:
    """Continue the language model's own pretraining on the task's text, labels dropped, before fine-tuning.

    Peters et al. (2018, sec. 3.4) fine-tune ELMo's biLM this way on each task's training data ("domain
    transfer for the biLM"); here ``adapt_epochs`` passes over SST-2's training sentences (movie reviews; the
    models were pretrained on Wikipedia), with AdamW at ``adapt_lr``, linear warm-up then cosine decay.
    ELMo and GPT-2 read ``max_len``-token windows of the sentences joined by a separator, BERT the sentences.
    Returns the steps taken and the mean loss of the first and last tenth of them."""
    lm.to(run.device).train()
    if kind == "bert":
        rows = [e.ids[:cfg.max_len] for e in tok.encode_batch(sentences)]
        steps = max(1, round(cfg.adapt_epochs * len(rows) / cfg.batch_size))
    else:
        sep = tok.token_to_id(G.TK.GPT_EOT if kind == "gpt2" else "[SEP]")
        texts = [" " + s for s in sentences] if kind == "gpt2" else sentences
        stream = torch.tensor([i for e in tok.encode_batch(texts, add_special_tokens=False) for i in e.ids + [sep]])
        if len(stream) <= cfg.max_len:
            raise ConfigError(f"adapt_epochs: the training sentences hold {len(stream)} tokens, fewer than one "
                              f"max_len={cfg.max_len} window; use more of them (train_size) or adapt_epochs=0")
        steps = max(1, round(cfg.adapt_epochs * len(stream) / (cfg.batch_size * cfg.max_len)))
    opt = G.make_optimizer(lm, cfg.adapt_lr, cfg.weight_decay)
    g, losses = torch.Generator().manual_seed(0), []
    for step in range(steps):
        set_lr(opt, warmup_cosine(step, steps, cfg.adapt_lr, cfg.adapt_lr * 0.1, min(cfg.warmup, steps // 5)))
        if kind == "bert":
            pick = torch.randint(0, len(rows), (cfg.batch_size,), generator=g).tolist()
            batch = pad_batch([rows[i] for i in pick], lm.pad_id)
        else:
            x, y = G.get_batch(stream, cfg.batch_size, cfg.max_len - 1, seed=step)
            batch = torch.cat([x, y[:, -1:]], 1)  # (B, max_len) windows
        with run.autocast():
            loss = lm_objective(kind, lm, tok, batch.to(run.device), g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            run.log(step, adapt_loss=loss.item())
    k = max(1, steps // 10)
    return {"adapt_steps": steps, "adapt_loss_first": float(np.mean(losses[:k])),
            "adapt_loss_last": float(np.mean(losses[-k:]))}


_EMBEDDINGS = ("tok_embed", "pos", "tok", "seg", "norm")  # GPT-2's token and position tables; BERT's, its
#                                                           segment table and the norm over their sum


def layer_depth(name: str, n_layers: int) -> int:
    """Depth of a classifier parameter: 0 for the LM's embeddings, i + 1 for block i, n_layers + 1 for the rest
    (GPT-2's final norm, BERT's pooler, the new head)."""
    parts = name.split(".")
    if "layers" in parts:
        return int(parts[parts.index("layers") + 1]) + 1
    return 0 if parts[0] == "lm" and parts[1] in _EMBEDDINGS else n_layers + 1


def layerwise_optimizer(clf: Classifier, lr: float, weight_decay: float, decay: float) -> torch.optim.AdamW:
    """GPT-2's AdamW (decay on matrices only) with one group per depth and matrix/vector kind; a group at
    depth ``k`` of ``L + 1`` gets ``lr_scale = decay^(L + 1 - k)``, which :func:`set_lr` applies."""
    if decay == 1.0:
        return G.make_optimizer(clf, lr, weight_decay)
    n_layers = max(layer_depth(n, 0) for n, _ in clf.named_parameters())
    groups: dict[tuple[int, bool], list] = {}
    for name, p in clf.named_parameters():
        groups.setdefault((layer_depth(name, n_layers), p.dim() >= 2), []).append(p)
    return torch.optim.AdamW([{"params": ps, "weight_decay": weight_decay if matrix else 0.0,
                               "lr_scale": decay ** (n_layers + 1 - depth)}
                              for (depth, matrix), ps in sorted(groups.items())], lr=lr, betas=(0.9, 0.95))


@torch.no_grad()
def frozen_features(clf: Classifier, seqs, run: Run, batch: int = 256) -> torch.Tensor:
    """(N, width) sentence features of ``seqs`` with every weight as it is and dropout off; batches of similar
    lengths (sorted), rows back in the order of ``seqs``."""
    clf.eval()
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = torch.empty(len(seqs), clf.head.in_features)
    for a in range(0, len(seqs), batch):
        sel = order[a:a + batch]
        with run.autocast():
            z = clf.features(pad_batch([seqs[i] for i in sel], clf.pad_id).to(run.device))[0]
        out[torch.from_numpy(sel)] = z.float().cpu()
    clf.train()
    return out


def probe_head(clf: Classifier, tr_x, tr_y, cfg: FinetuneConfig, run: Run) -> float:
    """The first stage of Kumar et al.'s (2022) LP-FT: fit the head alone, a logistic regression on the
    language model's frozen features (:func:`dlnotes.selfsup.probe.fit_logreg`: L-BFGS, L2 penalty
    ``probe_l2 * ||W||^2``); fine-tuning then starts from a head that already reads the features instead of a
    random one, whose early gradients would reshape them. Returns the probe's training accuracy."""
    z = frozen_features(clf, tr_x, run)
    fit = fit_logreg(z, tr_y, clf.head.out_features, cfg.probe_l2, max_iter=500)
    with torch.no_grad():
        clf.head.load_state_dict(fit.state_dict())
        return float((fit(z).argmax(-1) == tr_y).float().mean())


def finetune(clf: Classifier, train, dev, cfg: FinetuneConfig, run: Run, tag: str, seed: int = 0,
             l2sp: float = 0.0) -> float:
    """Fine-tune every weight of ``clf`` on ``train``; returns its accuracy on ``dev``. With ``l2sp`` = alpha > 0
    each step ends with L2-SP's decoupled pull of the language model's weights toward where they started,
    ``w <- w - lr_t alpha (w - w0)``."""
    (tr_x, tr_y), (dv_x, dv_y) = train, dev
    clf.to(run.device)
    anchor = [(p, p.detach().clone()) for p in clf.lm.parameters()] if l2sp > 0 else []
    if cfg.probe:
        probe_acc = probe_head(clf, tr_x, tr_y, cfg, run)
        run.log(0, **{f"{tag}_probe_train_accuracy": probe_acc})
        run.print(f"{tag}: the linear probe's training accuracy {probe_acc:.4f}")
    opt = layerwise_optimizer(clf, cfg.lr, cfg.weight_decay, cfg.layer_decay)
    steps = max(1, int(cfg.epochs * len(tr_x) / cfg.batch_size))
    lengths = np.array([len(s) for s in tr_x])
    batches: list[np.ndarray] = []
    for step in range(steps):
        epoch, k = divmod(step, -(-len(tr_x) // cfg.batch_size))  # batches per epoch, the last one short
        if k == 0:
            batches = length_grouped_batches(lengths, cfg.batch_size, seed * 1000 + epoch)
        sel = batches[k].tolist()
        lr = warmup_cosine(step, steps, cfg.lr, cfg.lr * 0.1, cfg.warmup)
        set_lr(opt, lr)
        with run.autocast():
            logits, lm = clf.forward_with_lm(pad_batch([tr_x[i] for i in sel], clf.pad_id).to(run.device),
                                             cfg.lm_coef > 0)
        loss = F.cross_entropy(logits.float(), tr_y[sel].to(run.device))
        if lm is not None:  # L3 = L2 + lambda L1 (Radford et al. 2018, eq. 5)
            loss = loss + cfg.lm_coef * lm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for p, p0 in anchor:  # L2-SP, decoupled: w <- w + lr_t alpha (w0 - w)
                p.lerp_(p0, lr * l2sp)
        if step % 50 == 0 or step == steps - 1:
            run.log(step, **{f"{tag}_loss": loss.item()})
    return accuracy(clf, dv_x, dv_y, clf.pad_id)


def sst2_recipe(cfg: FinetuneConfig, run: Run) -> dict[str, float]:
    train, dev = T.sst2("train"), T.sst2("dev")  # read (and a bad holdout rejected) before any pretraining
    if cfg.holdout:  # every accuracy below is then on held-out *training* sentences, not on dev
        train, dev = hold_out_sentences(train, cfg.holdout, cfg.holdout_seed)
    t0 = time.time()
    src = Path(cfg.pretrained) if cfg.pretrained else _pretrain_here(cfg, run)
    pretrain_s = time.time() - t0
    if cfg.train_size:
        train = [train[i] for i in np.random.default_rng(0).permutation(len(train))[:cfg.train_size]]
    if cfg.dev_size:
        dev = dev[:cfg.dev_size]
    lm, tok, width, pad, fresh = load_lm(cfg.model, src)
    result = {"bow_accuracy": bag_of_words_accuracy(train, dev), "pretrain_s": pretrain_s,
              "heldout_sentences": cfg.holdout}  # 0: the accuracies are on dev
    if cfg.detokenize:  # the language models read raw text in pretraining; so do both of their copies here
        train, dev = [(TK.ptb_detokenize(s), y) for s, y in train], [(TK.ptb_detokenize(s), y) for s, y in dev]
    data_tr, data_dv = encode_sst2(tok, cfg.model, train, cfg.max_len), encode_sst2(tok, cfg.model, dev, cfg.max_len)
    torch.manual_seed(0)
    t = time.time()
    if cfg.adapt_epochs > 0:
        result.update(adapt_lm(cfg.model, lm, tok, training_sentences(s for s, _ in train), cfg, run))
        result["adapt_s"] = time.time() - t
        t = time.time()
    accs: dict[str, list[float]] = {"pretrained": [], "scratch": []}
    for which in accs:
        for seed in range(cfg.seeds):
            if seed or which == "scratch":  # (seed 0's pretrained copy goes on from the adaptation's state)
                torch.manual_seed(seed)  # the head's (and scratch's whole model's) initial weights, dropout
            model = (copy.deepcopy(lm) if cfg.seeds > 1 else lm) if which == "pretrained" else fresh()
            tag = which if cfg.seeds == 1 else f"{which}_seed{seed}"
            clf = Classifier(cfg.model, model, width, pad, cfg.dropout, cfg.pool, cfg.bos)
            accs[which].append(finetune(clf, data_tr, data_dv, cfg, run, tag, seed=seed,
                                        l2sp=cfg.l2sp if which == "pretrained" else 0.0))
            if cfg.seeds > 1:
                result[f"{which}_accuracy_seed{seed}"] = accs[which][-1]
        result[f"{which}_accuracy"] = float(np.mean(accs[which]))
        if which == "pretrained":
            result["finetune_s"] = (time.time() - t) / cfg.seeds  # one fine-tune of one copy
    result["accuracy"] = result["pretrained_accuracy"]
    result["pretraining_gain"] = result["pretrained_accuracy"] - result["scratch_accuracy"]
    if cfg.seeds > 1:  # spread of the per-seed gains (seed k's pretrained copy against seed k's scratch copy)
        result["pretraining_gain_sd"] = float(np.std(np.subtract(accs["pretrained"], accs["scratch"]), ddof=1))
    run.print(", ".join(f"{k} {v:.4f}" for k, v in result.items()))
    return result


_TARGET = "issue 4: pretraining improves SST-2 dev accuracy by >= 2 points over scratch; best model >= 82%"
# Each preset choice was made on held-out SST-2 *training* sentences (``holdout``), not on dev; the screens'
# figures, and the dev runs that checked the promising ones, are in docs/results.md (sst2-gpt2, sst2-bert, sst2-elmo).
# Pretraining steps leave the fine-tunes room in the 90 minutes on a 2-core CPU with bf16: GPT-2 3500 (45 of
# the AMD machine's 76.5 min; gpt2-pretrain's own 6000 gave a smaller gain, +0.9), BERT its default 6000 (65.7 min in
# all), ELMo 6000 (55 min; 9000 gave -0.9).
_PRETRAIN_FULL = {"gpt2": "iters=3500", "bert": "", "elmo": "iters=6000"}
# ELMo's LSTMs fine-tune at 2e-3 (at the Transformers' 1e-4 both copies underfit in two epochs), after one pass
# of adaptation to the training sentences (Peters et al. 2018); GPT-2 fine-tunes 3 seeds per copy, as one seed's gain
# moves by about a point. Left off, no better held out or on dev: GPT-2's auxiliary LM loss, layer-wise rates, LP-FT,
# pool=mean / eot, task-adaptive passes for GPT-2 and BERT, the leading <|endoftext|> (bos) and L2-SP (l2sp).
_FINETUNE_FULL = {"gpt2": {"seeds": 3}, "bert": {}, "elmo": {"lr": 2e-3, "adapt_epochs": 1.0}}
_QUICK = {"train_size": 600, "dev_size": 200, "epochs": 1.0, "batch_size": 16, "warmup": 5, "max_len": 32, "seeds": 1}
for _kind in ("gpt2", "bert", "elmo"):
    def _make(kind=_kind):
        def fn(cfg: FinetuneConfig, run: Run) -> dict[str, float]:
            return sst2_recipe(cfg, run)
        fn.__doc__ = (f"SST-2 dev accuracy: {kind} fine-tuned after pretraining vs from scratch vs bag-of-words "
                      f"logistic regression.")
        small = "n_layers=2,d_model=64,n_heads=2" if kind != "elmo" else "emb=64,hidden=64,context=32"
        quick = dict(_QUICK, pretrain_set=f"corpus=builtin,vocab_size=2000,iters=40,warmup=5,batch_size=16,{small}",
                     adapt_epochs=_FINETUNE_FULL[kind].get("adapt_epochs", 0.0))
        recipe(f"sst2-{kind}", lecture=8, section="ELMO, BERT, and GPT-2", config=FinetuneConfig,
               datasets=("english_corpus", "sst2"),
               presets={"full": {"model": kind, "pretrain_set": _PRETRAIN_FULL[kind], **_FINETUNE_FULL[kind]},
                        "quick": quick},
               target=Target("pretraining_gain", ">=", 0.02, _TARGET))(fn)
    _make()
