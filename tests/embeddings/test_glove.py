"""Tier 1: GloVe's co-occurrence counts, loss and AdaGrad step against hand computations and autograd."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlnotes.sequence import glove as G
from dlnotes.sequence import word2vec as W


def test_cooccurrence_matches_brute_force_with_distance_weights():
    sents = [["a", "b", "c", "a", "d"], ["b", "a"], ["c", "d", "d", "a", "b", "c"]]
    corpus = W.build_corpus(sents, min_count=1)
    window = 3
    X = G.cooccurrence(corpus, window, chunk_words=4).toarray()  # small chunks: pairs across cuts count once
    idx = {w: i for i, w in enumerate(corpus.words)}
    ref = np.zeros_like(X)
    for s in sents:
        for t, w in enumerate(s):
            for k in range(1, window + 1):
                if t + k < len(s):
                    ref[idx[w], idx[s[t + k]]] += 1.0 / k
                    ref[idx[s[t + k]], idx[w]] += 1.0 / k
    np.testing.assert_allclose(X, ref)


def test_weighting_function():
    x = torch.tensor([1.0, 50.0, 100.0, 400.0])
    np.testing.assert_allclose(G.weight(x, 100.0, 0.75).numpy(), [0.01 ** 0.75, 0.5 ** 0.75, 1.0, 1.0], rtol=1e-6)


def test_loss_matches_hand_computation():
    rng = np.random.default_rng(0)
    n, d = 4, 3
    U, V = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    b, c = rng.normal(size=n), rng.normal(size=n)
    X = np.array([[0, 2, 150, 0], [2, 0, 0.5, 7], [150, 0.5, 0, 1], [0, 7, 1, 0]])
    hand = 0.0
    for i in range(n):
        for j in range(n):
            if X[i, j] > 0:
                f = min(1.0, (X[i, j] / 100.0) ** 0.75)
                hand += f * (sum(U[i, k] * V[j, k] for k in range(d)) + b[i] + c[j] - np.log(X[i, j])) ** 2
    i, j = np.nonzero(X)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    ours = G.glove_loss(t(U), t(V), t(b), t(c), torch.tensor(i), torch.tensor(j), t(X[i, j]))
    assert abs(float(ours) - hand) < 1e-9 * max(1.0, hand)


def test_adagrad_step_uses_the_loss_gradient():
    torch.manual_seed(0)
    m = G.GloVe(6, 4, seed=1)
    m.U, m.V, m.b, m.c = (p.double() for p in (m.U, m.V, m.b, m.c))
    for name in ("GU", "GV", "Gb", "Gc"):
        setattr(m, name, getattr(m, name).double())
    i = torch.tensor([0, 1, 1, 5, 3])  # word 1 repeats: its gradients are summed
    j = torch.tensor([2, 2, 4, 0, 3])
    x = torch.tensor([3.0, 120.0, 0.7, 12.0, 1.0], dtype=torch.float64)
    params = [p.clone().requires_grad_() for p in (m.U, m.V, m.b, m.c)]
    G.glove_loss(*params, i, j, x).backward()
    before = [p.clone() for p in (m.U, m.V, m.b, m.c)]
    lr = 0.05
    m.adagrad_step(i, j, x, lr, 100.0, 0.75)
    for p0, p1, ref in zip(before, (m.U, m.V, m.b, m.c), params):
        # first AdaGrad step from G = 1: G <- 1 + g^2, then theta <- theta - lr * g / sqrt(G)
        torch.testing.assert_close(p1 - p0, -lr * ref.grad / (1 + ref.grad ** 2).sqrt(), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(m.GU - 1, params[0].grad ** 2)


def test_adagrad_step_of_a_frequent_word_stays_within_the_rate():
    """A word in hundreds of a minibatch's pairs sums hundreds of gradients; accumulating before stepping keeps
    each coordinate's move within lr (stepping first, as the C code does per entry, moved it by lr * the sum)."""
    m = G.GloVe(50, 8, seed=0)
    m.U.normal_()
    m.V.normal_()
    i = torch.zeros(500, dtype=torch.long)  # word 0 paired with every other word, ten times over
    j = torch.arange(500) % 49 + 1
    x = torch.full((500,), 200.0)
    before = m.U[0].clone()
    lr = 0.25
    m.adagrad_step(i, j, x, lr, 10.0, 0.75)
    assert (m.U[0] - before).abs().max() <= lr
    assert (m.U[0] - before).abs().max() > 0.5 * lr  # it did move: the summed gradient is large


@pytest.mark.parametrize("impl", ["python", "numba"])
def test_per_entry_steps_equal_minibatches_of_one(impl):
    """The per-entry kernel (the reference C code's granularity) takes, entry by entry in the given order,
    exactly the step adagrad_step takes on a minibatch of that one entry; entries outside the order are
    untouched. numba compiles the same loop (one thread: sequential, so the result is exact)."""
    if impl == "numba":
        pytest.importorskip("numba")
    g = torch.Generator().manual_seed(0)
    i, j = torch.randint(0, 30, (400,), generator=g), torch.randint(0, 30, (400,), generator=g)
    x = torch.rand(400, generator=g) * 30 + 0.1  # on both sides of x_max = 10
    order = torch.randperm(400, generator=g)[:300]
    ref, ours = G.GloVe(30, 8, seed=3), G.GloVe(30, 8, seed=3)
    loss = sum(ref.adagrad_step(i[e:e + 1], j[e:e + 1], x[e:e + 1], 0.25, 10.0, 0.75) for e in order.tolist())
    assert ours.entry_steps(i, j, x, order, 0.25, 10.0, 0.75, impl, threads=1) == pytest.approx(loss, rel=1e-5)
    for name in ("U", "V", "b", "c", "GU", "GV", "Gb", "Gc"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=1e-5, atol=1e-6, msg=name)
    assert (ours.GU != 1).any(1).sum() == len(i[order].unique())  # the rows the order visits, and no others


@pytest.mark.parametrize("impl", ["batched", "numba"])
def test_glove_training_lowers_the_loss(impl):
    from dlnotes.data import text as T

    if impl == "numba":
        pytest.importorskip("numba")
    corpus = W.build_corpus(T.builtin_sentences()[:1500], min_count=2)
    _, one = G.train_glove(corpus, G.GloVeConfig(dim=20, epochs=1, batch=4096, window=5, impl=impl))
    _, six = G.train_glove(corpus, G.GloVeConfig(dim=20, epochs=6, batch=4096, window=5, impl=impl))
    assert six["final_loss"] < 0.8 * one["final_loss"] < 0.8 * one["initial_loss"]
