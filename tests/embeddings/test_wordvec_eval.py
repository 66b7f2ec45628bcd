"""Tier 1: the analogy and word-similarity evaluators against hand-made cases, scipy and gensim."""
from __future__ import annotations

import numpy as np
import pytest

from dlnotes.eval import wordvec as E


def _planted():
    """Vectors where king - man + woman = queen exactly, and paris - france + germany = berlin."""
    rng = np.random.default_rng(0)
    words = ["the", "man", "woman", "king", "queen", "france", "paris", "germany", "berlin", "noise1", "noise2"]
    vec = {w: rng.normal(size=16) for w in words}
    vec["queen"] = vec["king"] - vec["man"] + vec["woman"]
    vec["berlin"] = vec["paris"] - vec["france"] + vec["germany"]
    return E.Embeddings(words, np.stack([vec[w] for w in words]))


def test_3cosadd_finds_planted_analogies_and_respects_restriction():
    emb = _planted()
    sections = {"family": [("man", "king", "woman", "queen")],
                "capital": [("france", "paris", "germany", "berlin"), ("france", "paris", "germany", "noise2")]}
    res = E.analogy_accuracy(emb, sections, restrict=100)
    assert res["analogy_questions"] == 3 and res["analogy_accuracy"] == pytest.approx(2 / 3)
    # restricted to the 9 most frequent words, the question mentioning noise2 is not asked
    res = E.analogy_accuracy(emb, sections, restrict=9)
    assert res["analogy_questions"] == 2 and res["analogy_accuracy"] == 1.0


def test_question_words_are_excluded_from_the_answer():
    words = ["a", "b", "c", "d"]
    vecs = np.array([[1.0, 0], [0, 1.0], [0.9, 0.1], [0.2, 1.0]])
    # b - a + c is closest to b itself; 3CosAdd must skip the question words and answer d
    res = E.analogy_accuracy(E.Embeddings(words, vecs), {"s": [("a", "b", "c", "d")]})
    assert res["analogy_accuracy"] == 1.0


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.integers(0, 5, size=50).astype(float)  # ties in y
    assert E.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def test_nearest_and_pca():
    emb = _planted()
    assert emb.nearest("king", 3)[0][1] >= emb.nearest("king", 3)[1][1]
    xy = E.pca_2d(np.random.default_rng(0).normal(size=(10, 5)))
    assert xy.shape == (10, 2) and abs(xy[:, 0].var()) >= abs(xy[:, 1].var())


def test_matches_gensim_evaluator_on_random_vectors(tmp_path):
    gensim = pytest.importorskip("gensim")
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    vecs = rng.normal(size=(60, 8)).astype(np.float32)
    vecs[5] = vecs[1] - vecs[0] + vecs[2]  # a few solvable questions among random ones
    qs = [("w0", "w1", "w2", "w5")] + [tuple(f"w{k}" for k in rng.choice(60, 4, replace=False)) for _ in range(200)]
    qs += [("w0", "w1", "w2", "w59")]  # outside the restricted vocabulary below
    f = tmp_path / "q.txt"
    f.write_text(": sec\n" + "\n".join(" ".join(q) for q in qs) + "\n")
    kv = KeyedVectors(8)
    kv.add_vectors(words, vecs)
    g_acc, g_sections = kv.evaluate_word_analogies(str(f), restrict_vocab=50, case_insensitive=True)
    ours = E.analogy_accuracy(E.Embeddings(words, vecs), {"sec": qs}, restrict=50)
    n_g = sum(len(s["correct"]) + len(s["incorrect"]) for s in g_sections if s["section"] == "Total accuracy")
    assert ours["analogy_questions"] == n_g
    assert ours["analogy_accuracy"] == pytest.approx(g_acc)
