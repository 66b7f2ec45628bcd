"""Tier 2: skip-gram, CBOW and GloVe on a small real corpus (two Wikipedia files, 325k tokens) put obvious
pairs closer than random pairs."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dlnotes.eval import wordvec as E
from dlnotes.sequence import glove as G
from dlnotes.sequence import word2vec as W
from tests.conftest import needs_data

PAIRS = [("he", "she"), ("his", "her"), ("one", "two"), ("three", "four"), ("first", "second"),
         ("north", "south"), ("east", "west"), ("january", "february"), ("black", "white"),
         ("father", "mother"), ("son", "daughter"), ("war", "battle")]


@needs_data("english_corpus")
@pytest.mark.parametrize("model", ["skipgram", "cbow", "glove"])
def test_obvious_pairs_closer_than_random_pairs(model):
    from dlnotes.data import text as T

    corpus = W.build_corpus(T.english_corpus_lines(["enwiki/wiki_00.gz", "enwiki/wiki_01.gz"]), min_count=5)
    if model == "glove":  # the recipe's rate and x_max, three passes over the co-occurrences
        vectors = G.train_glove(corpus, G.GloVeConfig(dim=50, epochs=3))[0]
    else:
        impl = "numba" if importlib.util.find_spec("numba") else "batched"
        # a small corpus needs several epochs and a larger step before the vectors leave their common direction
        cfg = W.W2VConfig(model=model, dim=50, epochs=5, impl=impl, threads=1,
                          lr=0.05 if model == "skipgram" else 0.1)
        vectors = W.train_word2vec(corpus, cfg, seed=0).vectors()
    emb = E.Embeddings(corpus.words, vectors)
    obvious = np.array([emb.similarity(a, b) for a, b in PAIRS])
    rng = np.random.default_rng(0)
    common = [w for w, c in zip(corpus.words, corpus.counts) if c >= 20]
    rand = np.array([emb.similarity(*rng.choice(common, 2, replace=False)) for _ in range(2000)])
    assert obvious.mean() > rand.mean() + 0.25
    assert (obvious > np.quantile(rand, 0.9)).mean() >= 0.75  # at least 9 of the 12 pairs
