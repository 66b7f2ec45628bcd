"""word2vec's update kernels (Lecture 8): the SGD steps that :mod:`dlnotes.sequence.word2vec` runs.

For a centre vector ``h`` (skip-gram: ``v_i``; CBOW: the mean of the context vectors) and a target
word ``j``, one SGD step on the chosen objective, with learning rate ``lr``:

* negative sampling: ``log sigma(u_j^T h) + sum_{k=1}^{K} log sigma(-u_{n_k}^T h)``, ``n_k`` drawn
  from the unigram^0.75 noise table;
* hierarchical softmax: ``sum_l log sigma((1 - 2 c_l) u_{p_l}^T h)`` along the Huffman code ``c``
  and inner-node path ``p`` of ``j``;
* full softmax: ``u_j^T h - log sum_w exp(u_w^T h)`` (small vocabularies only).

The output vectors are updated in place and the gradient for ``h`` is accumulated into ``neu1e``,
then added to the input vectors, as in the original C code. Three implementations of the same
maths: readable Python loops over numpy arrays (the reference, also what numba compiles for
``impl="numba"``, run Hogwild-style over threads), and a batched torch version applying a minibatch
of pairs at once (``impl="batched"``). The "planning" helpers draw the subsampled corpus, the
dynamic-window contexts and the negatives with vectorised numpy.
"""
from __future__ import annotations

import math

import numpy as np
import torch

prange = range  # the Python reference runs the thread loop serially; jitted() swaps in numba.prange


# ----------------------------------------------------------------------------- planning (vectorised numpy)
def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """q(w) proportional to count(w)^0.75, the negative-sampling noise."""
    q = counts.astype(np.float64) ** power
    return q / q.sum()


def subsample(corpus_ids: np.ndarray, starts: np.ndarray, keep_prob: np.ndarray, rng):
    """Drop frequent words at random; returns kept ids and their sentence index."""
    sent = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    keep = rng.random(len(corpus_ids)) < keep_prob[corpus_ids]
    return corpus_ids[keep], sent[keep]


def context_matrix(ids: np.ndarray, sent: np.ndarray, window: int, rng) -> np.ndarray:
    """(T, 2 window) positions of each centre's context words (-1 where none) with a dynamic window:
    each centre draws its own window b ~ U{1..window} and sees the words within b of it in its sentence."""
    n = len(ids)
    b = rng.integers(1, window + 1, size=n)  # dynamic window per centre
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])  # (2W,)
    pos = np.arange(n)[:, None] + offsets[None]  # (T, 2W)
    ok = (np.abs(offsets)[None] <= b[:, None]) & (pos >= 0) & (pos < n)
    pos = np.where(ok, pos, 0)
    ok &= sent[pos] == sent[:, None]
    return np.where(ok, pos, -1).astype(np.int64)


def draw_negatives(table: np.ndarray, shape, rng) -> np.ndarray:
    """Noise words from a precomputed table in which word w fills a share q(w) of the slots."""
    return table[rng.integers(0, len(table), size=shape)]


def noise_table(counts: np.ndarray, power: float = 0.75, size: int = 10_000_000) -> np.ndarray:
    q = noise_distribution(counts, power)
    edges = np.round(np.cumsum(q) * size).astype(np.int64)
    return np.repeat(np.arange(len(counts), dtype=np.int32), np.diff(np.concatenate([[0], edges])))


# ----------------------------------------------------------------------------- SGD kernels (readable loops)
NS, HS, SOFTMAX = 0, 1, 2  # objective codes used by the kernels


def _output_update(h, U, target, negs, codes, points, lengths, objective, lr, neu1e):
    """One SGD step on the output side for input vector h and target word; returns dL/dh * -lr in neu1e.

    Each term is a logistic regression ``label - s(u.h)``: for negative sampling the target (label 1)
    and the noise words (label 0); for hierarchical softmax the inner nodes on the target's path
    (label 1 - code bit); for the full softmax every word with ``1[w = o] - softmax(U h)_w``.
    """
    d = h.shape[0]
    if objective == SOFTMAX:
        x = U @ h  # (N,)
        p = np.exp(x - x.max())
        p /= p.sum()
        for w in range(U.shape[0]):
            g = ((1.0 if w == target else 0.0) - p[w]) * lr
            for k in range(d):
                neu1e[k] += g * U[w, k]
            for k in range(d):
                U[w, k] += g * h[k]
        return
    n_terms = negs.shape[0] + 1 if objective == NS else lengths[target]
    for t in range(n_terms):
        if objective == NS:
            row = target if t == 0 else negs[t - 1]
            label = 1.0 if t == 0 else 0.0
            if t > 0 and row == target:
                continue  # a noise draw equal to the target is skipped (as word2vec/gensim do)
        else:
            row = points[target, t]
            label = 1.0 - codes[target, t]
        f = np.float32(0.0)
        for k in range(d):
            f += h[k] * U[row, k]
        f = min(max(f, np.float32(-30.0)), np.float32(30.0))
        g = np.float32((label - 1.0 / (1.0 + math.exp(-f))) * lr)
        for k in range(d):
            neu1e[k] += g * U[row, k]
        for k in range(d):
            U[row, k] += g * h[k]


_MASK48 = np.uint64(0xFFFFFFFFFFFF)


def _next_random(state):
    """word2vec's linear congruential generator (48-bit), identical in Python and numba."""
    return (state * np.uint64(25214903917) + np.uint64(11)) & _MASK48


def _draw_window(state, window):
    """Next generator state and the centre's reduced window b, uniform in 1..window (word2vec's draw)."""
    state = _next_random(state)
    return state, 1 + np.int64((state >> np.uint64(16)) % np.uint64(window))


def skipgram_updates(V, U, ids, sent, table, codes, points, lengths, objective, window, negative,
                     lr0, lr1, seeds, centre_input):
    """Skip-gram SGD over a chunk of (subsampled) token ids with sentence indices ``sent``.

    For each centre t: draw its window b from 1..window, and for each context word j within b in the
    same sentence take one SGD step on input v_{ids[t]} with target ids[j] (and ``negative`` noise words
    from ``table``). lr goes lr0 -> lr1 linearly over the chunk. ``len(seeds)`` threads take contiguous
    ranges of centres and update V, U without locks (Hogwild), as word2vec's C code does.
    ``centre_input``: v_centre predicts the context word (the notes' P(x_j | x_i)); otherwise v_context
    predicts the centre, as word2vec's C code and gensim do (the same pairs, the roles swapped).
    """
    n, d, threads = ids.shape[0], V.shape[1], seeds.shape[0]
    for th in prange(threads):
        rnd = seeds[th]
        neu1e = np.zeros(d, dtype=V.dtype)
        negs = np.zeros(negative, dtype=np.int64)
        lo, hi = n * th // threads, n * (th + 1) // threads
        for t in range(lo, hi):
            lr = lr0 + (lr1 - lr0) * t / n
            rnd, b = _draw_window(rnd, window)
            c = ids[t]
            for j in range(max(t - b, 0), min(t + b + 1, n)):
                if j == t or sent[j] != sent[t]:
                    continue
                for k in range(negative):
                    rnd = _next_random(rnd)
                    negs[k] = table[np.int64((rnd >> np.uint64(16)) % np.uint64(table.shape[0]))]
                src, dst = (c, ids[j]) if centre_input else (ids[j], c)
                neu1e[:] = 0.0
                _output_update(V[src], U, dst, negs, codes, points, lengths, objective, lr, neu1e)
                for k in range(d):
                    V[src, k] += neu1e[k]


def cbow_updates(V, U, ids, sent, table, codes, points, lengths, objective, window, negative,
                 lr0, lr1, seeds, centre_input):
    """CBOW SGD: h = Ave(v_j) over the context words within the centre's window b, target = centre.
    As in word2vec, every context vector receives the full error ``neu1e`` (not divided by the count)."""
    n, d, threads = ids.shape[0], V.shape[1], seeds.shape[0]
    for th in prange(threads):
        rnd = seeds[th]
        neu1e = np.zeros(d, dtype=V.dtype)
        h = np.zeros(d, dtype=V.dtype)
        negs = np.zeros(negative, dtype=np.int64)
        lo, hi = n * th // threads, n * (th + 1) // threads
        for t in range(lo, hi):
            lr = lr0 + (lr1 - lr0) * t / n
            rnd, b = _draw_window(rnd, window)
            cnt = 0
            h[:] = 0.0
            for j in range(max(t - b, 0), min(t + b + 1, n)):
                if j != t and sent[j] == sent[t]:
                    cnt += 1
                    for k in range(d):
                        h[k] += V[ids[j], k]
            if cnt == 0:
                continue
            h /= cnt
            for k in range(negative):
                rnd = _next_random(rnd)
                negs[k] = table[np.int64((rnd >> np.uint64(16)) % np.uint64(table.shape[0]))]
            neu1e[:] = 0.0
            _output_update(h, U, ids[t], negs, codes, points, lengths, objective, lr, neu1e)
            for j in range(max(t - b, 0), min(t + b + 1, n)):
                if j != t and sent[j] == sent[t]:
                    for k in range(d):
                        V[ids[j], k] += neu1e[k]


_JIT: dict = {}


def numba_copy(f, env: dict, parallel: bool = False):
    """``f`` compiled by numba with globals ``env`` (cached on disk): the readable loop, run as machine code."""
    import numba

    return numba.njit(parallel=parallel, fastmath=True, cache=True)(type(f)(f.__code__, env, f.__name__))


def jitted(name: str):
    """The numba-compiled copy of ``skipgram_updates`` / ``cbow_updates`` (compiled on first use, cached on disk)."""
    if not _JIT:
        import numba

        env = {"np": np, "math": math, "prange": numba.prange, "NS": NS, "HS": HS, "SOFTMAX": SOFTMAX,
               "_MASK48": _MASK48, "__name__": __name__}
        for f in (_output_update, _next_random, _draw_window):
            env[f.__name__] = numba_copy(f, env)
        for f in (skipgram_updates, cbow_updates):  # same code, globals pointing at the jitted helper
            _JIT[f.__name__] = numba_copy(f, env, parallel=True)
    return _JIT[name]


# ----------------------------------------------------------------------------- batched updates (torch)
def batched_output_update(h, U, target, negs, codes, points, lengths, objective, lr):
    """Vectorised version of ``_output_update`` for a minibatch: h (B, d) -> -lr dL/dh (B, d).
    A row of U used k times in the batch moves by the mean of its k updates (frequent noise words and the
    tree's root would otherwise take k steps at once and diverge); rows used once move exactly as in the
    sequential loop."""
    if objective == SOFTMAX:
        g = -torch.softmax(h @ U.T, -1)  # (B, N)
        g[torch.arange(len(target)), target] += 1.0
        g *= lr
        grad_h = g @ U
        U += g.T @ h
        return grad_h
    if objective == NS:
        rows = torch.cat([target[:, None], negs], 1)  # (B, 1 + K)
        label = torch.zeros(rows.shape, dtype=h.dtype)
        label[:, 0] = 1.0
        valid = torch.ones(rows.shape, dtype=h.dtype)
        valid[:, 1:] = (negs != target[:, None]).to(h.dtype)
    else:
        rows = points[target]  # (B, L)
        label = 1.0 - codes[target].to(h.dtype)
        valid = (torch.arange(points.shape[1])[None] < lengths[target][:, None]).to(h.dtype)
    u = U[rows]  # (B, M, d)
    f = torch.einsum("bd,bmd->bm", h, u).clamp(-30, 30)
    g = (label - torch.sigmoid(f)) * valid * lr  # (B, M)
    grad_h = torch.einsum("bm,bmd->bd", g, u)
    flat = rows.reshape(-1)
    share = 1.0 / torch.bincount(flat, minlength=U.shape[0]).to(h.dtype)[flat]  # (B M,) 1 / uses in this batch
    U.index_add_(0, flat, (g[..., None] * h[:, None]).reshape(-1, h.shape[1]) * share[:, None])
    return grad_h


def batched_updates(V, U, centers, targets_or_ctx, negs, codes, points, lengths, objective, lr0, lr1,
                    batch: int, cbow: bool):
    """Minibatch SGD over the planned pairs (skip-gram) or centres (CBOW), all in torch."""
    n = len(centers)
    for a in range(0, n, batch):
        b = min(n, a + batch)
        lr = lr0 + (lr1 - lr0) * a / max(n, 1)
        c, ng = centers[a:b], negs[a:b]
        if cbow:
            ctx = targets_or_ctx[a:b]  # (B, 2W)
            m = (ctx >= 0).to(V.dtype)
            cnt = m.sum(1, keepdim=True)
            h = (V[ctx.clamp(min=0)] * m[..., None]).sum(1) / cnt.clamp(min=1)
            grad_h = batched_output_update(h, U, c, ng, codes, points, lengths, objective, lr)
            grad_h = grad_h * (cnt > 0).to(V.dtype)
            flat, w = ctx.clamp(min=0).reshape(-1), m.reshape(-1)
            share = w / torch.bincount(flat, weights=w, minlength=V.shape[0]).clamp(min=1).to(V.dtype)[flat]
            V.index_add_(0, flat, (grad_h[:, None] * m[..., None]).reshape(-1, V.shape[1]) * share[:, None])
        else:
            grad_h = batched_output_update(V[c], U, targets_or_ctx[a:b], ng, codes, points, lengths, objective, lr)
            share = 1.0 / torch.bincount(c, minlength=V.shape[0]).to(V.dtype)[c]
            V.index_add_(0, c, grad_h * share[:, None])
