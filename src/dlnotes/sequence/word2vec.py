"""word2vec (Lecture 8): skip-gram and CBOW with full softmax, negative sampling and hierarchical softmax.

Each word ``i`` has two vectors: ``v_i`` (rows of ``V``, the "input"/centre embedding) and ``u_i``
(rows of ``U``, the "output"/context embedding). Skip-gram models the context given the centre,

    P(x_j | x_i) = softmax(U^T v_i)_j,    l(i, j) = u_j^T v_i - log sum_w exp(u_w^T v_i)

and CBOW the centre given the average of its context vectors, ``h = Ave(v_j)``,
``P(x_i | context) = softmax(U^T h)_i``. The full softmax touches all ``N`` output vectors per pair,
so word2vec replaces it by one of two cheaper objectives (for an input vector ``h``, target ``o``):

* negative sampling: ``log s(u_o.h) + sum_{k=1..K} log s(-u_{n_k}.h)`` with ``n_k`` drawn from the
  unigram distribution raised to 0.75 (``s`` is the logistic sigmoid). Its optimum has
  ``u_o.h = PMI(o, h) - log(K q(o))`` (Levy & Goldberg 2014): adding back ``log K q(o)`` gives the
  same conditional the full softmax learns (tests/embeddings checks this on a tiny vocabulary).
* hierarchical softmax: a Huffman tree over the vocabulary; ``P(o | h) = prod_d s((1 - 2 c_d) u_{n_d}.h)``
  along the path of inner nodes ``n_d`` with code bits ``c_d``: a proper distribution costing
  ``O(log N)`` per pair. ``U`` then holds the ``N - 1`` inner-node vectors.

Tricks from the word2vec paper, all here: frequent-word subsampling (keep a word of count ``c`` with
probability ``(sqrt(c / (t T)) + 1) t T / c``, ``T`` the corpus size, ``t = sample``); a dynamic window
(each centre uses a window drawn uniformly from 1..window, which weights near words more); a learning
rate decaying linearly from ``lr`` to ``min_lr`` over training; ``v`` initialised uniformly in
``+-1/d`` (gensim 4; the C code uses ``+-0.5/d``) and ``U`` at zero.

Speed. Per-pair SGD in Python runs at a few thousand words/s. The work is split in two:
``plan_*`` draws all the randomness of a chunk of the corpus with vectorised numpy (subsampling,
windows, the (centre, context) pairs, the negatives), then a kernel applies the SGD updates. The
kernels (in :mod:`dlnotes.sequence.w2v_kernels`) are plain Python loops over numpy arrays, readable
and used as the reference; when numba is installed the same functions are compiled (``impl="numba"``)
and run Hogwild-style on ``threads`` threads, as the original C code does. ``impl="batched"`` applies the updates of a minibatch of pairs at
once with ``np.add.at`` (vectorised numpy, no compiler). benchmarks/word2vec_vs_gensim.py measures them.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data import cache_dir
from ..data import text as T
from ..engine import Run, Target, recipe
from ..engine.config import ConfigError, require_positive
from .w2v_kernels import (HS, NS, SOFTMAX, batched_updates, cbow_updates, context_matrix, draw_negatives, jitted,
                          noise_table, skipgram_updates, subsample)

# ----------------------------------------------------------------------------- corpus and vocabulary
@dataclass
class Corpus:
    """A tokenised corpus: ``ids`` (all tokens, vocabulary order), sentence boundaries, counts."""
    words: list[str]  # vocabulary, most frequent first
    counts: np.ndarray  # (N,) int64
    ids: np.ndarray  # (T,) int32 token ids; words under min_count are dropped, as in word2vec
    starts: np.ndarray  # (S + 1,) int64 sentence offsets into ids
    raw_tokens: int  # tokens before dropping rare words (what words/s counts)

    def sentences(self):
        for a, b in zip(self.starts[:-1], self.starts[1:]):
            yield self.ids[a:b]


def build_corpus(sentences, min_count: int = 5, max_vocab: int | None = None) -> Corpus:
    """Vocabulary (count >= min_count, most frequent first) and the id stream of ``sentences``."""
    table: dict[str, int] = {}
    raw, lens = [], []
    for s in sentences:
        raw.extend(table.setdefault(w, len(table)) for w in s)
        lens.append(len(s))
    raw = np.asarray(raw, dtype=np.int64)
    full_counts = np.bincount(raw, minlength=len(table))
    words_all = np.array(list(table), dtype=object)
    order = np.lexsort((words_all.astype(str), -full_counts))  # count desc, then alphabetical
    order = order[full_counts[order] >= min_count][:max_vocab]
    remap = np.full(len(table), -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    mapped = remap[raw]
    keep = mapped >= 0
    sent_of = np.repeat(np.arange(len(lens)), lens)
    new_lens = np.bincount(sent_of[keep], minlength=len(lens))
    starts = np.concatenate([[0], np.cumsum(new_lens)]).astype(np.int64)
    return Corpus([str(w) for w in words_all[order]], full_counts[order].astype(np.int64),
                  mapped[keep].astype(np.int32), starts, int(len(raw)))


def english_corpus(files: list[str] | None = None, min_count: int = 5) -> Corpus:
    """The English corpus (default: all but the held-out wiki_99) tokenised once, cached as .npz."""
    files = files or [f for f in T.english_corpus_files() if f != "enwiki/wiki_99.gz"]
    key = hashlib.sha1(json.dumps([sorted(files), min_count]).encode()).hexdigest()[:16]
    cache = cache_dir() / f"w2v_corpus_{key}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return Corpus(list(z["words"]), z["counts"], z["ids"], z["starts"], int(z["raw_tokens"]))
    corpus = build_corpus(T.english_corpus_lines(files), min_count)
    tmp = cache.with_name(f".{cache.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, words=np.array(corpus.words), counts=corpus.counts, ids=corpus.ids, starts=corpus.starts,
             raw_tokens=corpus.raw_tokens)
    os.replace(tmp, cache)
    return corpus


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's subsampling: keep a word of count c with prob (sqrt(c/(tT)) + 1) tT/c (capped at 1)."""
    if sample <= 0:
        return np.ones(len(counts))
    thr = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / thr) + 1) * thr / counts)


# ----------------------------------------------------------------------------- Huffman tree
def huffman_tree(counts: np.ndarray):
    """Huffman codes for hierarchical softmax.

    Returns ``codes`` (N, L) int8 bits, ``points`` (N, L) int32 inner-node ids (0 .. N-2, the root is
    N-2) and ``lengths`` (N,): word w's path is ``points[w, :lengths[w]]`` with bits ``codes[w, :lengths[w]]``.
    Frequent words get short codes; the expected length is within 1 bit of the entropy.
    """
    n = len(counts)
    if n < 2:
        raise ValueError("hierarchical softmax needs at least 2 words")
    heap = [(int(c), i) for i, c in enumerate(counts)]  # leaves 0..n-1, inner nodes n..2n-2
    heapq.heapify(heap)
    parent = np.zeros(2 * n - 1, dtype=np.int64)
    bit = np.zeros(2 * n - 1, dtype=np.int8)
    nxt = n
    while len(heap) > 1:
        c1, a = heapq.heappop(heap)
        c2, b = heapq.heappop(heap)
        parent[a], parent[b], bit[a], bit[b] = nxt, nxt, 0, 1
        heapq.heappush(heap, (c1 + c2, nxt))
        nxt += 1
    root = 2 * n - 2
    paths = []
    for w in range(n):  # walk up to the root, then reverse so paths go root -> leaf
        node, code, pts = w, [], []
        while node != root:
            code.append(bit[node])
            node = parent[node]
            pts.append(node - n)
        paths.append((code[::-1], pts[::-1]))
    depth = max(len(c) for c, _ in paths)
    codes = np.zeros((n, depth), dtype=np.int8)
    points = np.zeros((n, depth), dtype=np.int32)
    lengths = np.zeros(n, dtype=np.int32)
    for w, (c, p) in enumerate(paths):
        codes[w, :len(c)], points[w, :len(p)], lengths[w] = c, p, len(c)
    return codes, points, lengths


# ----------------------------------------------------------------------------- per-pair objectives
def full_softmax_loss(h: torch.Tensor, U: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-l(i, j) = -(u_j.h - log sum_w exp(u_w.h)), averaged over the batch. h (B, d), U (N, d)."""
    return torch.nn.functional.cross_entropy(h @ U.T, target)


def negative_sampling_loss(h, u_pos, u_neg) -> torch.Tensor:
    """-[log s(u_o.h) + sum_k log s(-u_{n_k}.h)]; h (B, d), u_pos (B, d), u_neg (B, K, d)."""
    pos = torch.nn.functional.logsigmoid((h * u_pos).sum(-1))
    neg = torch.nn.functional.logsigmoid(-torch.einsum("bd,bkd->bk", h, u_neg)).sum(-1)
    return -(pos + neg).mean()


def hierarchical_log_prob(h, U_inner, codes, points, lengths, target) -> torch.Tensor:
    """log P(o | h) = sum_d log s((1 - 2 c_d) u_{n_d}.h) along target's Huffman path; (B,)."""
    t = np.asarray(target).reshape(-1)
    c = torch.as_tensor(codes[t], dtype=h.dtype)  # (B, L)
    p = torch.as_tensor(points[t], dtype=torch.long)
    mask = torch.arange(codes.shape[1])[None] < torch.as_tensor(lengths[t])[:, None]
    x = torch.einsum("bd,bld->bl", h, U_inner[p])  # (B, L)
    return (torch.nn.functional.logsigmoid((1 - 2 * c) * x) * mask).sum(-1)


# ----------------------------------------------------------------------------- the model and its training loop
@dataclass
class W2VConfig:
    corpus: str = "english"  # english (english_corpus) | brown (NLTK Brown only) | builtin (no download)
    wiki_files: int = 99  # Wikipedia files wiki_00 .. wiki_{n-1} to use (wiki_99 is always held out)
    nltk: bool = False  # add the NLTK corpora (Brown, ABC, ...) to the English corpus
    model: str = "skipgram"  # skipgram | cbow
    sg_input: str = "centre"  # skip-gram input: centre (notes: v_i predicts context j) | context (C code, gensim)
    objective: str = "ns"  # ns (negative sampling) | hs (hierarchical softmax) | softmax (full; small vocabularies)
    dim: int = 100  # embedding size d
    window: int = 5  # maximum window; each centre draws its own from 1..window
    negative: int = 5  # noise words per pair (ns)
    noise_power: float = 0.75  # q(w) proportional to count^power
    sample: float = 1e-3  # subsampling threshold t (0 disables)
    min_count: int = 5  # words rarer than this are dropped before windows are formed
    max_vocab: int = 0  # keep only the most frequent words (0: no cap; the full softmax needs a small one)
    epochs: int = 1  # passes over the corpus
    lr: float = 0.025  # initial learning rate, decayed linearly to min_lr
    min_lr: float = 1e-4  # final learning rate
    impl: str = "auto"  # numba (compiled loops, Hogwild threads) | batched (torch minibatches) | python | auto
    threads: int = 2  # Hogwild threads for impl=numba
    batch: int = 512  # pairs per minibatch for impl=batched
    chunk_words: int = 200_000  # corpus words per step (randomness is planned per chunk)
    eval_restrict: int = 30_000  # analogy search restricted to the most frequent words (as gensim)
    ckpt_every: int = 0  # steps between checkpoints (0: only at the end)

    def check(self):
        check_corpus_fields(self)
        for name, allowed in (("model", ("skipgram", "cbow")), ("sg_input", ("centre", "context")),
                              ("objective", ("ns", "hs", "softmax")), ("impl", ("numba", "batched", "python", "auto"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: {getattr(self, name)!r}; use one of {', '.join(allowed)}")
        require_positive(self, "dim", "window", "epochs", "lr", "threads", "batch", "chunk_words")
        if self.objective == "ns":
            require_positive(self, "negative")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr: {self.min_lr}; the rate decays from lr={self.lr} to min_lr, so use "
                              f"0 <= min_lr <= lr (the default is 1e-4)")
        if self.sample < 0:
            raise ConfigError(f"sample: {self.sample}; use 0 (no subsampling) or a threshold such as 1e-3")


def check_corpus_fields(cfg) -> None:
    """The corpus fields word2vec and GloVe share: a known corpus, 1-99 Wikipedia files, counts >= 0."""
    if cfg.corpus not in ("english", "brown", "builtin"):
        raise ConfigError(f"corpus: {cfg.corpus!r}; use english (english_corpus in the data root), brown or builtin")
    if not 1 <= cfg.wiki_files <= 99:
        raise ConfigError(f"wiki_files: {cfg.wiki_files}; use 1 to 99 (wiki_00 .. wiki_98; wiki_99 is held out)")
    if cfg.min_count < 1 or cfg.max_vocab < 0:
        raise ConfigError(f"min_count: {cfg.min_count}, max_vocab: {cfg.max_vocab}; use min_count >= 1 and "
                          "max_vocab >= 0 (0: no cap)")
    require_positive(cfg, "eval_restrict")


class Word2Vec(nn.Module):
    """The two embedding tables as buffers (so checkpoints hold them) over numpy arrays the kernels update."""

    def __init__(self, counts: np.ndarray, cfg: W2VConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        n, d = len(counts), cfg.dim
        rng = np.random.default_rng(seed)
        v = ((2 * rng.random((n, d), dtype=np.float32) - 1) / d).astype(np.float32)  # U(-1/d, 1/d) as gensim
        u = np.zeros((n - 1 if cfg.objective == "hs" else n, d), dtype=np.float32)
        self.register_buffer("V", torch.from_numpy(v))  # (N, d) centre/input vectors v_i
        self.register_buffer("U", torch.from_numpy(u))  # (N, d) context vectors u_j, or (N-1, d) tree nodes
        self.keep = keep_probability(counts, cfg.sample)
        if cfg.objective == "hs":
            self.codes, self.points, self.lengths = huffman_tree(counts)
        else:
            self.codes = np.zeros((1, 1), np.int8)
            self.points = np.zeros((1, 1), np.int32)
            self.lengths = np.zeros(1, np.int32)
        self.table = noise_table(counts, cfg.noise_power) if cfg.objective == "ns" else None

    def vectors(self) -> np.ndarray:
        return self.V.numpy()

    def plan_pairs(self, kept: np.ndarray, sent: np.ndarray, rng):
        """For the batched path: the (centre, context) pairs (or CBOW centres and (C, 2W) contexts) and
        the negatives of a subsampled chunk, drawn with vectorised numpy."""
        cfg = self.cfg
        pos = context_matrix(kept, sent, cfg.window, rng)  # (T, 2W) positions or -1
        if cfg.model == "skipgram":
            mask = pos >= 0
            centers = np.repeat(kept, mask.sum(1)).astype(np.int64)  # centre-major order, like the loops
            targets = kept[pos[mask]].astype(np.int64)
        else:
            rows = (pos >= 0).any(1)
            centers = kept[rows].astype(np.int64)
            targets = np.where(pos >= 0, kept[pos], -1)[rows].astype(np.int64)  # (C, 2W) context ids
        k = cfg.negative if cfg.objective == "ns" else 0
        negs = (draw_negatives(self.table, (len(centers), k), rng).astype(np.int64) if k
                else np.zeros((len(centers), 0), np.int64))
        return centers, targets, negs

    def train_chunk(self, ids: np.ndarray, starts: np.ndarray, lr0: float, lr1: float, rng) -> int:
        """Subsample one chunk of sentences and run SGD over it; returns the number of words kept."""
        cfg = self.cfg
        obj = {"ns": NS, "hs": HS, "softmax": SOFTMAX}[cfg.objective]
        kept, sent = subsample(ids, starts, self.keep, rng)
        tree = (self.codes, self.points, self.lengths)
        impl = cfg.impl
        if impl == "auto":  # the compiled loops when numba is installed, else torch minibatches
            import importlib.util
            impl = "numba" if importlib.util.find_spec("numba") else "batched"
        if impl == "batched":
            t = lambda a: torch.from_numpy(np.ascontiguousarray(a).astype(np.int64))  # noqa: E731
            centers, targets, negs = self.plan_pairs(kept, sent, rng)
            batched_updates(self.V, self.U, t(centers), t(targets), t(negs), *map(t, tree), obj, lr0, lr1,
                            cfg.batch, cfg.model == "cbow")
            return len(kept)
        threads = max(1, cfg.threads) if impl == "numba" else 1
        seeds = rng.integers(1, 2 ** 48, size=threads, dtype=np.uint64)
        table = self.table if self.table is not None else np.zeros(1, np.int32)
        negative = cfg.negative if cfg.objective == "ns" else 0
        args = (self.V.numpy(), self.U.numpy(), kept.astype(np.int64), sent.astype(np.int64), table, *tree, obj,
                cfg.window, negative, lr0, lr1, seeds, cfg.sg_input == "centre")
        name = "skipgram_updates" if cfg.model == "skipgram" else "cbow_updates"
        if impl == "numba":
            try:
                import numba
            except ImportError:
                raise RuntimeError("impl=numba needs numba (pip install numba); use impl=batched") from None
            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
            jitted(name)(*args)
        elif impl == "python":
            with np.errstate(over="ignore"):  # the LCG relies on uint64 wrap-around
                (skipgram_updates if cfg.model == "skipgram" else cbow_updates)(*args)
        else:
            raise ValueError(f"impl must be auto, numba, batched or python, not {cfg.impl!r}")
        return len(kept)


def chunk_bounds(corpus: Corpus, chunk_words: int) -> np.ndarray:
    """Sentence indices that start each chunk of about ``chunk_words`` tokens."""
    cut = np.searchsorted(corpus.starts[:-1], np.arange(0, len(corpus.ids), chunk_words), side="left")
    return np.unique(np.concatenate([cut, [len(corpus.starts) - 1]]))


def train_word2vec(corpus: Corpus, cfg: W2VConfig, seed: int = 0, run: Run | None = None) -> Word2Vec:
    """SGD over the corpus in chunks; lr decays linearly with the words seen. Logs words/s when given a Run."""
    import time

    model = Word2Vec(corpus.counts, cfg, seed)
    bounds = chunk_bounds(corpus, cfg.chunk_words)
    n_chunks = len(bounds) - 1
    total = n_chunks * cfg.epochs
    if run is not None:
        run.watch(model=model)
        run.restore()
        steps = run.steps(total, unit="chunk")
    else:
        steps = range(total)
    t0, words = time.time(), 0
    raw_per_token = corpus.raw_tokens / max(len(corpus.ids), 1)
    for step in steps:
        epoch, c = divmod(step, n_chunks)
        a, b = corpus.starts[bounds[c]], corpus.starts[bounds[c + 1]]
        ids, starts = corpus.ids[a:b], corpus.starts[bounds[c]:bounds[c + 1] + 1] - a
        frac0 = (epoch * len(corpus.ids) + a) / (cfg.epochs * len(corpus.ids))
        frac1 = (epoch * len(corpus.ids) + b) / (cfg.epochs * len(corpus.ids))
        rng = np.random.default_rng([seed, step])  # a pure function of (seed, step): resumable
        lr0, lr1 = (cfg.lr - (cfg.lr - cfg.min_lr) * f for f in (frac0, frac1))
        kept = model.train_chunk(ids, starts, lr0, lr1, rng)
        words += b - a
        if run is not None and (step % 10 == 0 or step == total - 1):
            el = time.time() - t0
            run.log(step, lr=lr0, words_per_s=words * raw_per_token / max(el, 1e-9),
                    kept_fraction=kept / max(b - a, 1))
    model.train_seconds = time.time() - t0
    model.words_trained = words * raw_per_token
    if run is not None:
        run.checkpoint()
    return model


def load_training_corpus(cfg) -> Corpus:
    """The corpus a config names, tokenised as the data README says, with cfg.min_count / max_vocab."""
    if cfg.corpus == "builtin":
        return build_corpus(T.builtin_sentences(), cfg.min_count, cfg.max_vocab or None)
    if cfg.corpus == "brown":
        return build_corpus(T.english_corpus_lines(["nltk/brown.zip"]), cfg.min_count, cfg.max_vocab or None)
    if cfg.corpus != "english":
        raise ValueError(f"unknown corpus {cfg.corpus!r}; use english, brown or builtin")
    files = [f"enwiki/wiki_{i:02d}.gz" for i in range(min(cfg.wiki_files, 99))]
    if cfg.nltk:
        files += [f for f in T.english_corpus_files() if f.startswith("nltk/")]
    corpus = english_corpus(files, cfg.min_count)
    if cfg.max_vocab and cfg.max_vocab < len(corpus.words):  # re-map to the capped vocabulary
        keep = corpus.ids < cfg.max_vocab
        sent = np.repeat(np.arange(len(corpus.starts) - 1), np.diff(corpus.starts))
        lens = np.bincount(sent[keep], minlength=len(corpus.starts) - 1)
        corpus = Corpus(corpus.words[:cfg.max_vocab], corpus.counts[:cfg.max_vocab], corpus.ids[keep],
                        np.concatenate([[0], np.cumsum(lens)]).astype(np.int64), corpus.raw_tokens)
    return corpus


def evaluate_and_report(words: list[str], vectors: np.ndarray, run: Run, restrict: int, extra: dict) -> dict:
    """Analogy accuracy, WordSim-353 Spearman, nearest neighbours and a PCA plot, written to the run."""
    from ..eval import wordvec as E

    emb = E.Embeddings(words, vectors)
    result = dict(extra)
    result.update(E.evaluate(emb, restrict=restrict))
    probe = [w for w in ("king", "france", "computer", "river", "war", "three", "good", "walking")
             if w in emb.index]
    run.save_text("neighbours.txt", "\n".join(f"{w}: " + ", ".join(f"{n} ({s:.2f})" for n, s in
                                                                   emb.nearest(w, 8)) for w in probe) + "\n")
    run.save_figure("pca", E.pca_plot(emb, E.PCA_WORDS))
    return result


def word2vec_recipe(cfg: W2VConfig, run: Run) -> dict[str, float]:
    corpus = load_training_corpus(cfg)
    run.print(f"corpus: {corpus.raw_tokens} tokens, {len(corpus.ids)} in a vocabulary of {len(corpus.words)}")
    model = train_word2vec(corpus, cfg, seed=0, run=run)
    extra = {"corpus_tokens": corpus.raw_tokens, "vocab": len(corpus.words),
             "throughput": model.words_trained / max(model.train_seconds, 1e-9),
             "train_s": model.train_seconds}
    return evaluate_and_report(corpus.words, model.vectors(), run, cfg.eval_restrict, extra)


_GENSIM = "gensim 4.4 on the same corpus (issue 4): analogy 0.147, WordSim 0.436; target = gensim - 1 point"
_QUICK = {"corpus": "builtin", "min_count": 3, "dim": 50, "epochs": 3, "chunk_words": 50_000, "lr": 0.05,
          "threads": 1}
_VARIANTS = {
    "word2vec-sgns": ("skipgram", "ns", "Skip-gram with negative sampling (unigram^0.75), subsampling, dynamic window"),
    "word2vec-cbow-ns": ("cbow", "ns", "CBOW (average of context vectors) with negative sampling"),
    "word2vec-sg-hs": ("skipgram", "hs", "Skip-gram with hierarchical softmax over a Huffman tree"),
    "word2vec-cbow-hs": ("cbow", "hs", "CBOW with hierarchical softmax over a Huffman tree"),
}
for _name, (_model, _obj, _doc) in _VARIANTS.items():
    def _make(name=_name, model=_model, obj=_obj, doc=_doc):
        def fn(cfg: W2VConfig, run: Run) -> dict[str, float]:
            return word2vec_recipe(cfg, run)
        fn.__doc__ = doc + ": Google analogy (3CosAdd, 30k words) and WordSim-353 on english_corpus."
        target = Target("analogy_accuracy", ">=", 0.137, _GENSIM) if name == "word2vec-sgns" else None
        quick = dict(_QUICK, **({"lr": 0.1} if model == "cbow" else {}))
        recipe(name, lecture=8, section="word2vec", config=W2VConfig, datasets=("english_corpus", "wordsim"),
               presets={"full": {"model": model, "objective": obj}, "quick": quick}, target=target)(fn)
    _make()


@recipe("word2vec-softmax", lecture=8, section="word2vec: skip-grams", config=W2VConfig,
        datasets=("english_corpus", "wordsim"),
        presets={"full": {"corpus": "brown", "objective": "softmax", "max_vocab": 5000, "impl": "batched",
                          "batch": 256, "epochs": 3},
                 "quick": {"corpus": "builtin", "max_vocab": 1000, "min_count": 3, "dim": 50, "epochs": 2}})
def word2vec_softmax(cfg: W2VConfig, run: Run) -> dict[str, float]:
    """Skip-gram with the notes' full softmax P(x_j|x_i) = softmax(U^T v_i) on a 5k-word Brown vocabulary."""
    return word2vec_recipe(cfg, run)
