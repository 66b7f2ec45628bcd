"""GloVe (Lecture 8): global vectors by weighted least-squares factorisation of log co-occurrences.

Co-occurrence counts ``x_ij`` are summed over a symmetric window, each pair at distance ``k`` adding
``1/k`` (distance weighting, as Pennington et al. 2014). The notes' loss is

    L(U, V, b, c) = sum_{i,j: x_ij > 0} f(x_ij) (u_i^T v_j + b_i + c_j - log x_ij)^2,
    f(x) = min(1, (x / x_max)^alpha),   alpha = 0.75, x_max = 100 in the paper (10 here, see below),

so frequent pairs do not dominate and pairs that never co-occur (log 0) never enter. It is minimised
with AdaGrad (Duchi et al. 2011) over the shuffled non-zero entries: for each parameter ``theta`` with
gradient ``g``, ``G <- G + g^2`` then ``theta <- theta - eta g / sqrt(G)``, ``G`` starting at 1. The word
vectors are ``U + V`` (the paper's ``W + W~``). Two granularities of the same step:

* ``impl="numba"`` (the default when numba is installed): one entry at a time, as the reference C code
  updates, ``threads`` threads each taking a share of the entries without locks (Hogwild). The loop
  (``entry_updates``) is plain Python, compiled by numba; ``impl="python"`` runs it uncompiled.
* ``impl="batched"``: torch minibatches of ``batch`` entries, ``g`` summed over a minibatch's entries that
  share a row. No compiler needed; 2-3x slower on this CPU.

**Where this departs from the reference C code, and why.** The C code steps *before* it accumulates
(``eta = 0.05``, ``G`` holding sums of ``(eta g)^2``). On a minibatch a frequent word's gradient is the
sum of hundreds of entries', so stepping first moves it by ``eta`` times that sum: too slow to learn in
a few epochs at 0.05, NaN at 0.25. Accumulating first (as AdaGrad is defined, and as
``torch.optim.Adagrad`` does) bounds every coordinate's step by ``eta``, so the rate can be 0.25; both
impls use that order, so they differ only in how many entries share a step.
``x_max = 10`` is the reference's own setting for text8-sized corpora (its ``demo.sh``; the paper's 100
is for billions of tokens). Measured on ``wiki_00``-``wiki_09`` (1.65M tokens), analogy / WordSim-353:
the earlier code (step first, 0.05, ``x_max`` 100) 0.001 / 0.07 after 5 epochs; step first at 0.05 with
``x_max`` 10, 0.017 / 0.30 after 4 (8192-entry minibatches); accumulating first, 0.044 / 0.33 after 4
(word2vec's skip-gram, one epoch on the same tokens: 0.008 / 0.11). The per-entry rate was chosen on
SimLex-999, which no result reports (4 epochs, 65536-entry minibatches for ``batched``):
eta = 0.05 / 0.1 / 0.25 / 0.5 / 1 gave 0.073 / 0.103 / **0.115** / 0.111 / -0.031 one entry at a time
(analogy / WordSim at 0.25: 0.049 / 0.386, 17 s on 2 threads), against 0.116 in minibatches at 0.25
(0.045 / 0.329, 48 s): the same rate suits both.
"""
from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..engine import Run, recipe
from ..engine.config import ConfigError, require_positive
from .w2v_kernels import numba_copy
from .word2vec import Corpus, check_corpus_fields, evaluate_and_report, load_training_corpus

prange = range  # the Python reference runs the thread loop serially; the numba copy runs it on threads


@dataclass
class GloVeConfig:
    corpus: str = "english"  # english | brown | builtin (see word2vec.W2VConfig)
    wiki_files: int = 99  # Wikipedia files wiki_00 .. wiki_{n-1} (wiki_99 held out)
    nltk: bool = False  # add the NLTK corpora
    min_count: int = 5  # vocabulary threshold
    max_vocab: int = 0  # cap on the vocabulary (0: none)
    window: int = 10  # symmetric co-occurrence window
    dim: int = 100  # vector size
    x_max: float = 10.0  # f(x) saturates at x_max (the reference demo's value for text8-sized corpora)
    alpha: float = 0.75  # f(x) = (x / x_max)^alpha below x_max
    lr: float = 0.25  # AdaGrad step eta (bounds each coordinate's step)
    epochs: int = 15  # passes over the non-zero co-occurrences
    impl: str = "auto"  # numba (per-entry steps, compiled, Hogwild threads) | batched (torch) | python | auto
    threads: int = 2  # Hogwild threads for impl=numba
    batch: int = 65536  # non-zero entries per step (one AdaGrad minibatch for impl=batched)
    chunk_words: int = 1_000_000  # tokens counted at a time when building the co-occurrence matrix
    eval_restrict: int = 30_000  # analogy search vocabulary
    ckpt_every: int = 0  # steps (minibatches) between checkpoints

    def check(self):
        check_corpus_fields(self)
        require_positive(self, "window", "dim", "x_max", "alpha", "lr", "epochs", "batch", "chunk_words", "threads")
        if self.impl not in ("numba", "batched", "python", "auto"):
            raise ConfigError(f"impl: {self.impl!r}; use numba (per-entry steps, compiled), batched (torch "
                              "minibatches), python (the per-entry loop uncompiled: tiny inputs only) or auto")


def cooccurrence(corpus: Corpus, window: int, chunk_words: int = 1_000_000):
    """Symmetric distance-weighted counts X (scipy CSR, N x N): x_ij = sum over pairs 1/distance."""
    import scipy.sparse as sp

    n = len(corpus.words)
    sent = np.repeat(np.arange(len(corpus.starts) - 1), np.diff(corpus.starts))
    total = sp.csr_matrix((n, n), dtype=np.float64)
    for a in range(0, len(corpus.ids), chunk_words):
        b = min(len(corpus.ids), a + chunk_words + window)  # overlap so pairs across the cut count once
        ids, s = corpus.ids[a:b].astype(np.int64), sent[a:b]
        rows, cols, vals = [], [], []
        for k in range(1, window + 1):
            first = np.arange(min(chunk_words, len(ids) - k))  # left word of each pair starts in this chunk
            ok = s[first] == s[first + k]
            rows.append(ids[first[ok]])
            cols.append(ids[first[ok] + k])
            vals.append(np.full(int(ok.sum()), 1.0 / k))
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        total = total + sp.coo_matrix((v, (r, c)), shape=(n, n)).tocsr()  # duplicates are summed
    return (total + total.T).tocsr()


def weight(x: torch.Tensor, x_max: float, alpha: float) -> torch.Tensor:
    """f(x) = min(1, (x / x_max)^alpha)."""
    return torch.clamp((x / x_max) ** alpha, max=1.0)


def glove_loss(U, V, b, c, i, j, x, x_max: float = 100.0, alpha: float = 0.75) -> torch.Tensor:
    """sum_k f(x_k) (u_{i_k}.v_{j_k} + b_{i_k} + c_{j_k} - log x_k)^2 over the given non-zero entries."""
    diff = (U[i] * V[j]).sum(-1) + b[i] + c[j] - torch.log(x)
    return (weight(x, x_max, alpha) * diff ** 2).sum()


def entry_updates(U, V, b, c, GU, GV, Gb, Gc, I, J, X, order, lr, x_max, alpha, threads):
    """AdaGrad one non-zero entry at a time: for each entry ``e`` in ``order``, with
    (i, j, x) = (I[e], J[e], X[e]), the step ``GloVe.adagrad_step`` takes on a
    minibatch of that one entry (accumulate G += g^2, then step lr g / sqrt(G)), as the reference C code
    updates. ``threads`` take contiguous ranges of the entries and update U, V, b, c without locks
    (Hogwild); with one thread the result is exactly sequential. Returns the loss summed over the entries,
    each taken just before its own step."""
    n, d = order.shape[0], U.shape[1]
    losses = np.zeros(threads)
    for th in prange(threads):
        total = 0.0
        for t in range(n * th // threads, n * (th + 1) // threads):
            e = order[t]
            i, j, x = I[e], J[e], X[e]
            diff = b[i] + c[j] - math.log(x)
            for k in range(d):
                diff += U[i, k] * V[j, k]
            fw = min(1.0, (x / x_max) ** alpha)
            total += fw * diff * diff
            fd = 2.0 * fw * diff
            for k in range(d):
                gu, gv = fd * V[j, k], fd * U[i, k]
                GU[i, k] += gu * gu
                GV[j, k] += gv * gv
                U[i, k] -= lr * gu / math.sqrt(GU[i, k])
                V[j, k] -= lr * gv / math.sqrt(GV[j, k])
            Gb[i] += fd * fd
            b[i] -= lr * fd / math.sqrt(Gb[i])
            Gc[j] += fd * fd
            c[j] -= lr * fd / math.sqrt(Gc[j])
        losses[th] = total
    return losses.sum()


_JIT: dict = {}


class GloVe(torch.nn.Module):
    def __init__(self, n: int, dim: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        init = lambda *s: (torch.rand(*s, generator=g) - 0.5) / dim  # noqa: E731
        self.register_buffer("U", init(n, dim))  # (N, d) word vectors u_i
        self.register_buffer("V", init(n, dim))  # (N, d) context vectors v_j
        self.register_buffer("b", init(n))  # (N,) word biases
        self.register_buffer("c", init(n))  # (N,) context biases
        for name in ("U", "V", "b", "c"):  # AdaGrad accumulators G, starting at 1
            self.register_buffer(f"G{name}", torch.ones_like(getattr(self, name)))

    def adagrad_step(self, i, j, x, lr: float, x_max: float, alpha: float) -> float:
        """One AdaGrad minibatch on entries (i, j, x); returns the minibatch loss (before the step).

        With diff = u_i.v_j + b_i + c_j - log x and fd = 2 f(x) diff, the gradients are
        dL/du_i = fd v_j, dL/dv_j = fd u_i, dL/db_i = dL/dc_j = fd (rows repeated in a batch are summed).
        Each row accumulates G += g^2 first, then steps lr g / sqrt(G), so no coordinate moves by more than lr.
        """
        u, v = self.U[i], self.V[j]  # (B, d)
        diff = (u * v).sum(-1) + self.b[i] + self.c[j] - torch.log(x)  # (B,)
        fw = weight(x, x_max, alpha)
        fd = 2 * fw * diff
        loss = float((fw * diff ** 2).sum())
        for idx, updates in ((i, ((self.U, self.GU, fd[:, None] * v), (self.b, self.Gb, fd))),
                             (j, ((self.V, self.GV, fd[:, None] * u), (self.c, self.Gc, fd)))):
            rows, inv = idx.unique(return_inverse=True)  # one sort per side, shared by its vectors and biases
            for P, G, grad in updates:
                g = torch.zeros((len(rows),) + P.shape[1:], dtype=P.dtype).index_add_(0, inv, grad)  # summed per row
                acc = G[rows] + g ** 2
                G[rows] = acc
                P[rows] -= lr * g / acc.sqrt()
        return loss

    def entry_steps(self, i, j, x, order, lr: float, x_max: float, alpha: float, impl: str = "numba",
                    threads: int = 1) -> float:
        """AdaGrad one entry at a time over entries ``order`` of (i, j, x) (``entry_updates``); returns the
        summed loss."""
        kernel = entry_updates
        if impl == "numba":
            import numba

            if "entry_updates" not in _JIT:
                _JIT["entry_updates"] = numba_copy(entry_updates, {**globals(), "prange": numba.prange}, parallel=True)
            kernel = _JIT["entry_updates"]
            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
        else:
            threads = 1
        tensors = (self.U, self.V, self.b, self.c, self.GU, self.GV, self.Gb, self.Gc, i, j, x, order)
        return float(kernel(*(t.numpy() for t in tensors), lr, x_max, alpha, threads))

    def vectors(self) -> np.ndarray:
        return (self.U + self.V).numpy()  # the paper's W + W~


def train_glove(corpus: Corpus, cfg: GloVeConfig, seed: int = 0, run: Run | None = None):
    """Count co-occurrences, then AdaGrad epochs over the shuffled non-zeros; returns (vectors, info)."""
    impl, has_numba = cfg.impl, importlib.util.find_spec("numba") is not None
    if impl == "auto":  # the compiled per-entry steps when numba is installed, else torch minibatches
        impl = "numba" if has_numba else "batched"
    if impl == "numba" and not has_numba:
        raise RuntimeError("impl=numba needs numba (pip install numba); use impl=batched")
    t0 = time.time()
    X = cooccurrence(corpus, cfg.window, cfg.chunk_words).tocoo()
    i = torch.from_numpy(X.row.astype(np.int64))
    j = torch.from_numpy(X.col.astype(np.int64))
    x = torch.from_numpy(X.data.astype(np.float32))
    count_s = time.time() - t0
    model = GloVe(len(corpus.words), cfg.dim, seed)
    nnz = len(x)
    with torch.no_grad():  # loss of the initial parameters, for reference
        init_loss = sum(float(glove_loss(model.U, model.V, model.b, model.c, i[a:a + cfg.batch], j[a:a + cfg.batch],
                                         x[a:a + cfg.batch], cfg.x_max, cfg.alpha))
                        for a in range(0, nnz, cfg.batch)) / max(nnz, 1)
    per_epoch = max(1, -(-nnz // cfg.batch))
    total = per_epoch * cfg.epochs
    if run is not None:
        run.print(f"{nnz} non-zero co-occurrences (window {cfg.window}) counted in {count_s:.0f}s")
        run.watch(model=model)
        start = run.restore()
        steps = run.steps(total, unit="batch")
    else:
        start, steps = 0, range(total)
    perm = None
    epoch_loss = float(run.state.get("epoch_loss", 0.0)) if run is not None else 0.0  # resumed mid-epoch
    for step in steps:
        epoch, k = divmod(step, per_epoch)
        if perm is None or k == 0:
            perm = torch.randperm(nnz, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
            epoch_loss = 0.0 if k == 0 else epoch_loss
        sel = perm[k * cfg.batch:(k + 1) * cfg.batch]
        if impl == "batched":
            epoch_loss += model.adagrad_step(i[sel], j[sel], x[sel], cfg.lr, cfg.x_max, cfg.alpha)
        else:
            epoch_loss += model.entry_steps(i, j, x, sel, cfg.lr, cfg.x_max, cfg.alpha, impl, cfg.threads)
        if run is not None:
            run.state["epoch_loss"] = epoch_loss
        if run is not None and k == per_epoch - 1:
            run.log(step, loss=epoch_loss / nnz, epoch=epoch + 1)
    info = {"nnz": nnz, "initial_loss": init_loss, "count_s": count_s, "train_s": time.time() - t0 - count_s,
            "start_step": start, "final_loss": epoch_loss / nnz}
    if run is not None:
        run.checkpoint()
    return model.vectors(), info


@recipe("glove", lecture=8, section="GloVe", config=GloVeConfig, datasets=("english_corpus", "wordsim"),
        presets={"quick": {"corpus": "builtin", "min_count": 3, "dim": 50, "epochs": 10, "batch": 4096,
                           "window": 5}})
def glove_recipe(cfg: GloVeConfig, run: Run) -> dict[str, float]:
    """GloVe: distance-weighted co-occurrences, weighted least squares with AdaGrad, vectors U + V."""
    corpus = load_training_corpus(cfg)
    vectors, info = train_glove(corpus, cfg, seed=0, run=run)
    extra = {"corpus_tokens": corpus.raw_tokens, "vocab": len(corpus.words), "cooccurrences": info["nnz"],
             "initial_loss": info["initial_loss"], "train_loss": info["final_loss"], "count_s": info["count_s"],
             "train_s": info["train_s"]}
    return evaluate_and_report(corpus.words, vectors, run, cfg.eval_restrict, extra)
