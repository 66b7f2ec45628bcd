"""Tier 1: word2vec's objectives and SGD kernels against references (autograd, the full softmax, brute force)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlnotes.sequence import w2v_kernels as K
from dlnotes.sequence import word2vec as W

COUNTS = np.array([50, 30, 20, 10, 6, 3, 1], dtype=np.int64)


# ----------------------------------------------------------------------------- Huffman tree
def test_huffman_codes_prefix_free_and_near_entropy():
    rng = np.random.default_rng(0)
    counts = np.sort(rng.zipf(1.3, size=300).clip(max=10_000))[::-1].astype(np.int64)
    codes, points, lengths = W.huffman_tree(counts)
    words = ["".join(map(str, codes[w, :lengths[w]])) for w in range(len(counts))]
    assert len(set(words)) == len(words)
    srt = sorted(words)
    assert not any(b.startswith(a) for a, b in zip(srt, srt[1:])), "a code is a prefix of another"
    p = counts / counts.sum()
    entropy = -(p * np.log2(p)).sum()
    expected_len = (p * lengths).sum()
    assert entropy <= expected_len < entropy + 1  # Huffman: within one bit of the entropy
    assert lengths[0] <= lengths[-1]  # the most frequent word has the shortest code
    assert points.max() == len(counts) - 2 and (points[:, 0] == len(counts) - 2).all()  # all paths start at the root


def test_hierarchical_softmax_is_a_distribution():
    codes, points, lengths = W.huffman_tree(COUNTS)
    g = torch.Generator().manual_seed(0)
    U = torch.randn(len(COUNTS) - 1, 4, generator=g)
    h = torch.randn(3, 4, generator=g)
    total = sum(W.hierarchical_log_prob(h, U, codes, points, lengths, torch.full((3,), w)).exp()
                for w in range(len(COUNTS)))
    assert torch.allclose(total, torch.ones(3), atol=1e-6)


# ----------------------------------------------------------------------------- one SGD step = -lr * gradient
def _one_step(objective, lr=0.1, seed=0):
    """Apply the kernel's update for one (h, target) and return (h, U before, U after, neu1e)."""
    rng = np.random.default_rng(seed)
    n, d = len(COUNTS), 5
    codes, points, lengths = W.huffman_tree(COUNTS)
    U = rng.normal(size=(n - 1 if objective == K.HS else n, d)).astype(np.float32)
    h = rng.normal(size=d).astype(np.float32)
    negs = np.array([1, 4, 6], dtype=np.int64)
    U0 = U.copy()
    neu1e = np.zeros(d, np.float32)
    K._output_update(h, U, 2, negs, codes, points, lengths, objective, lr, neu1e)
    return h, U0, U, neu1e, negs, (codes, points, lengths)


@pytest.mark.parametrize("objective", [K.NS, K.HS, K.SOFTMAX])
def test_kernel_step_is_minus_lr_times_autograd_gradient(objective):
    lr = 0.1
    h, U0, U1, neu1e, negs, tree = _one_step(objective, lr)
    ht = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    Ut = torch.tensor(U0, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([2])
    if objective == K.NS:
        loss = W.negative_sampling_loss(ht[None], Ut[2][None], Ut[torch.as_tensor(negs)][None])
    elif objective == K.HS:
        loss = -W.hierarchical_log_prob(ht[None], Ut, *tree, target).sum()
    else:
        loss = W.full_softmax_loss(ht[None], Ut, target)
    loss.backward()
    # the kernel returns -lr dL/dh (applied by the caller to v) and updates U in place
    np.testing.assert_allclose(neu1e, -lr * ht.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(U1 - U0, -lr * Ut.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_negative_equal_to_target_is_skipped():
    codes, points, lengths = W.huffman_tree(COUNTS)
    U = np.ones((len(COUNTS), 3), np.float32)
    h = np.ones(3, np.float32)
    a, b = np.zeros(3, np.float32), np.zeros(3, np.float32)
    K._output_update(h, U.copy(), 2, np.array([2, 2]), codes, points, lengths, K.NS, 0.1, a)
    K._output_update(h, U.copy(), 2, np.zeros(0, np.int64), codes, points, lengths, K.NS, 0.1, b)
    np.testing.assert_allclose(a, b)


# ----------------------------------------------------------------------------- consistency with the full softmax
# A dense conditional P(j | i) over N = 6 words with marginal p(i). With d = N and v_i = e_i (one-hot input,
# as in the notes) the logits x_ij = u_j.v_i = U[j, i] are free, so each objective's optimum can be written
# down; we check that its gradient vanishes there and that it implies the same conditional as the full softmax.
N_TOY, K_NEG = 6, 5
TOY_COUNTS = np.array([40, 25, 15, 10, 6, 4])


def _toy(seed=0):
    g = torch.Generator().manual_seed(seed)
    P = torch.softmax(1.5 * torch.randn(N_TOY, N_TOY, generator=g, dtype=torch.float64), -1)  # P[i, j] = P(j|i)
    p_i = torch.softmax(torch.randn(N_TOY, generator=g, dtype=torch.float64), -1)
    q = torch.tensor(K.noise_distribution(TOY_COUNTS), dtype=torch.float64)
    return P, p_i, q, torch.eye(N_TOY, dtype=torch.float64)  # V = I: v_i = e_i


def test_full_softmax_optimum_is_the_conditional():
    P, p_i, q, V = _toy()
    U = P.log().T.clone().requires_grad_()  # x_ij = log P(j|i)
    loss = -(p_i[:, None] * P * torch.log_softmax(V @ U.T, -1)).sum()
    loss.backward()
    assert U.grad.abs().max() < 1e-12


def test_negative_sampling_optimum_matches_full_softmax():
    """Expected NS loss sum_i p(i)[sum_j P(j|i)(-log s(x_ij)) + K sum_j q(j)(-log s(-x_ij))] is stationary
    (and, being convex in each x_ij, minimal) at x_ij = log P(j|i) - log(K q(j)) (Levy & Goldberg 2014):
    adding log K q(j) back and normalising gives exactly the full-softmax conditional. Tolerance 1e-10."""
    P, p_i, q, V = _toy(1)
    F = torch.nn.functional
    x_star = (P / (K_NEG * q[None])).log()
    U = x_star.T.clone().requires_grad_()
    x = V @ U.T
    loss = (p_i[:, None] * (P * -F.logsigmoid(x) + K_NEG * q[None] * -F.logsigmoid(-x))).sum()
    loss.backward()
    assert U.grad.abs().max() < 1e-10
    # shifting the NS logits by log K q(j) and normalising recovers the conditional the full softmax learns
    torch.testing.assert_close(torch.softmax(x_star + math.log(K_NEG) + q.log()[None], -1), P, atol=1e-10, rtol=0)


def test_negative_sampling_sampled_gradient_is_unbiased():
    """Averaged over noise draws from the table, the kernel's per-pair NS gradient equals the gradient
    of the expected NS loss (tolerance 3% of its norm, 20k draws)."""
    P, p_i, q, V = _toy(3)
    rng = np.random.default_rng(0)
    U = rng.normal(scale=0.5, size=(N_TOY, N_TOY)).astype(np.float32)
    table = K.noise_table(TOY_COUNTS, 0.75, 100_000)
    # a small lr, so that a noise word drawn twice for one pair barely sees its own first update
    h, target, lr, draws = np.eye(N_TOY, dtype=np.float32)[0], 2, 1e-3, 20_000
    acc = np.zeros(N_TOY)
    for negs in K.draw_negatives(table, (draws, K_NEG), rng):
        e = np.zeros(N_TOY, np.float32)
        K._output_update(h, U.copy(), target, negs.astype(np.int64), None, None, None, K.NS, lr, e)
        acc += e
    ht = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    Ut = torch.tensor(U, dtype=torch.float64)
    F = torch.nn.functional
    x = Ut @ ht
    # negatives equal to the target are skipped by the kernel, so the expectation excludes them
    qx = q.clone()
    qx[target] = 0
    expected = -F.logsigmoid(x[target]) + K_NEG * (qx * -F.logsigmoid(-x)).sum()
    expected.backward()
    assert np.linalg.norm(acc / (draws * lr) + ht.grad.numpy()) < 0.03 * np.linalg.norm(ht.grad.numpy())


def test_hierarchical_softmax_optimum_matches_full_softmax():
    """At each inner node n the optimum has s(x_n) = P(words below n's 0-branch) / P(words below n); the
    expected HS loss is stationary there and P_HS(j | i) equals P(j | i) (tolerance 1e-10)."""
    P, p_i, q, V = _toy(2)
    codes, points, lengths = W.huffman_tree(TOY_COUNTS)
    mass = torch.zeros(N_TOY, N_TOY - 1, dtype=torch.float64)  # (contexts, nodes)
    mass0 = torch.zeros_like(mass)
    for w in range(N_TOY):
        for t in range(lengths[w]):
            mass[:, points[w, t]] += P[:, w]
            if codes[w, t] == 0:
                mass0[:, points[w, t]] += P[:, w]
    s = mass0 / mass
    U = (s / (1 - s)).log().T.clone().requires_grad_()  # (N-1 nodes, d = N)
    log_p = torch.stack([W.hierarchical_log_prob(V, U, codes, points, lengths, np.full(N_TOY, j))
                         for j in range(N_TOY)], 1)  # (contexts, targets)
    (-(p_i[:, None] * P * log_p).sum()).backward()
    assert U.grad.abs().max() < 1e-10
    torch.testing.assert_close(log_p.exp(), P, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- sampling and windows
def test_noise_table_follows_unigram_to_the_075():
    table = K.noise_table(COUNTS, 0.75, size=1_000_000)
    draws = K.draw_negatives(table, 400_000, np.random.default_rng(0))
    freq = np.bincount(draws, minlength=len(COUNTS)) / len(draws)
    q = COUNTS ** 0.75 / (COUNTS ** 0.75).sum()
    assert np.abs(freq - q).max() < 0.004


def test_subsampling_keep_probability():
    counts = np.array([1_000_000, 1000, 10])
    keep = W.keep_probability(counts, 1e-3)
    t = 1e-3 * counts.sum()
    assert keep[0] == pytest.approx((math.sqrt(counts[0] / t) + 1) * t / counts[0])
    assert keep[0] < 0.2 and keep[1] == 1.0 and keep[2] == 1.0


def test_context_matrix_dynamic_window_respects_sentences():
    rng = np.random.default_rng(0)
    ids = np.arange(40)
    sent = np.repeat([0, 1, 2, 3], 10)
    pos = K.context_matrix(ids, sent, 4, rng)
    sizes = []
    for t in range(40):
        ctx = pos[t][pos[t] >= 0]
        assert (sent[ctx] == sent[t]).all() and t not in ctx
        assert (np.abs(ctx - t) <= 4).all()
        if 4 <= t % 10 <= 5:  # far from sentence edges: the window is symmetric with radius b
            b = np.abs(ctx - t).max()
            assert len(ctx) == 2 * b
            sizes.append(b)
    assert len(set(sizes)) > 1  # dynamic: windows differ between centres


# ----------------------------------------------------------------------------- fast paths vs the reference
def _tiny_corpus():
    from dlnotes.data import text as T
    return W.build_corpus(T.builtin_sentences()[:120], min_count=2)


@pytest.mark.parametrize("model,objective", [("skipgram", "ns"), ("cbow", "hs")])
def test_numba_kernel_matches_python_reference(model, objective):
    pytest.importorskip("numba")
    corpus = _tiny_corpus()
    base = dict(model=model, objective=objective, dim=16, epochs=1, chunk_words=1000, threads=1)
    ref = W.train_word2vec(corpus, W.W2VConfig(impl="python", **base), seed=3)
    fast = W.train_word2vec(corpus, W.W2VConfig(impl="numba", **base), seed=3)
    assert np.abs(ref.V.numpy()).max() > 0
    np.testing.assert_allclose(fast.V.numpy(), ref.V.numpy(), atol=2e-5)
    np.testing.assert_allclose(fast.U.numpy(), ref.U.numpy(), atol=2e-5)


def test_batched_update_equals_sequential_when_words_do_not_repeat():
    rng = np.random.default_rng(0)
    n, d = 40, 6
    U = rng.normal(size=(n, d)).astype(np.float32)
    H = rng.normal(size=(4, d)).astype(np.float32)
    words = rng.permutation(n)[:16].reshape(4, 4)  # target + 3 negatives per row, all distinct
    targets, negs = words[:, 0], words[:, 1:]
    U_seq = U.copy()
    grads = []
    for b in range(4):
        e = np.zeros(d, np.float32)
        K._output_update(H[b], U_seq, targets[b], negs[b], np.zeros((1, 1), np.int8), np.zeros((1, 1), np.int32),
                         np.zeros(1, np.int32), K.NS, 0.05, e)
        grads.append(e)
    U_b = torch.tensor(U)
    g = K.batched_output_update(torch.tensor(H), U_b, torch.tensor(targets), torch.tensor(negs), None, None, None,
                                K.NS, 0.05)
    np.testing.assert_allclose(g.numpy(), np.stack(grads), atol=1e-6)
    np.testing.assert_allclose(U_b.numpy(), U_seq, atol=1e-6)


def test_build_corpus_drops_rare_words_and_orders_by_frequency():
    c = W.build_corpus([["a", "b", "a", "rare"], ["b", "a", "c"], ["c"]], min_count=2)
    assert c.words == ["a", "b", "c"] and list(c.counts) == [3, 2, 2]
    assert c.raw_tokens == 8 and list(c.starts) == [0, 3, 6, 7]
    assert [c.words[i] for i in c.ids] == ["a", "b", "a", "b", "a", "c", "c"]
