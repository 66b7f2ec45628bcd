"""SST-2 as the fine-tuning recipes read it (Lecture 8): the whole sentences among its phrase rows, a held-out
split of them for choosing settings without dev, token ids, length-grouped batches, and the bag-of-words baseline.

Dev holds whole sentences only, training 67k rows: sentences and the phrases of their parse trees
(:func:`training_sentences`), so :func:`hold_out_sentences` splits it the way training and dev are split.
"""
from __future__ import annotations

import numpy as np
import torch

from ..engine.config import ConfigError


def bag_of_words_accuracy(train, dev) -> float:
    """Logistic regression on binary unigram + bigram counts (scikit-learn); dev accuracy."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = CountVectorizer(ngram_range=(1, 2), binary=True, token_pattern=r"[^\s]+")
    xtr = vec.fit_transform([s for s, _ in train])
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(xtr, [y for _, y in train])
    return float(clf.score(vec.transform([s for s, _ in dev]), [y for _, y in dev]))


def encode_sst2(tok, kind: str, rows, max_len: int):
    """Token ids per sentence (BERT: [CLS] .. [SEP]; GPT-2: a leading space like mid-text words)."""
    texts = [(" " + s if kind == "gpt2" else s) for s, _ in rows]
    enc = tok.encode_batch(texts) if kind == "bert" else tok.encode_batch(texts, add_special_tokens=False)
    return [e.ids[:max_len] for e in enc], torch.tensor([y for _, y in rows])


def pad_batch(seqs, pad_id: int) -> torch.Tensor:
    """(B, longest) token ids, each sequence right-padded with ``pad_id``."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
    return out


def length_grouped_batches(lengths: np.ndarray, batch: int, seed: int, pool: int = 50) -> list[np.ndarray]:
    """One epoch of batches: shuffle, sort each pool of ``pool`` batches by length, cut, shuffle the batches.
    Sentences in a batch have similar lengths, so little of it is padding (SST-2's phrases run from 1 to
    50+ tokens); every sentence still appears once per epoch in a random batch order."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(lengths))
    out = []
    for a in range(0, len(perm), batch * pool):
        chunk = perm[a:a + batch * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return [out[i] for i in rng.permutation(len(out))]


def _inner_phrases(texts: set[str]):
    """A function from sentences to the ``texts`` that are runs of whole words strictly inside one of them."""
    prefixes = {" ".join(w[:k]) for s in texts for w in [s.split(" ")] for k in range(1, len(w) + 1)}

    def inner(sentences) -> set[str]:
        out = set()
        for sent in sentences:
            w = sent.split(" ")
            for i in range(len(w)):
                p = w[i]
                for j in range(i + 1, len(w) + 1):
                    if p not in prefixes:  # no text starts with these words, so no longer run is a text either
                        break
                    if p in texts and p != sent:
                        out.add(p)
                    if j < len(w):
                        p += " " + w[j]
        return out
    return inner


def training_sentences(texts) -> list[str]:
    """SST-2's training set holds each of its ~6.9k sentences and, as rows of their own, the phrases of their
    parse trees; the sentences are the texts that no other one contains as a run of whole words (longest first)."""
    texts = set(texts)
    return _sentences(texts, _inner_phrases(texts))


def _sentences(texts: set[str], inner) -> list[str]:
    """The ``texts`` no other one contains, longest first (``inner`` from :func:`_inner_phrases`)."""
    return sorted(texts - inner(texts), key=lambda s: (-len(s), s))


def hold_out_sentences(rows, n: int, seed: int = 0):
    """Split SST-2 train the way train and dev are split, for choosing settings without looking at dev.

    ``n`` whole training sentences drawn at random (``seed``) are held out with their labels; the training rows
    are the other sentences and every phrase that occurs, as a run of whole words, in one of them. A phrase found
    only inside held-out sentences is dropped, as no phrase of a dev sentence is a training row unless a training
    sentence also contains it. Returns (training rows, held-out rows)."""
    texts = {s for s, _ in rows}
    inner = _inner_phrases(texts)
    sents = _sentences(texts, inner)
    if not 0 < n < len(sents):
        raise ConfigError(f"holdout: {n}; SST-2 train has {len(sents)} whole sentences; hold out between 1 and "
                          f"{len(sents) - 1} of them (e.g. 1500), or 0 to report dev accuracy")
    held = {sents[i] for i in np.random.default_rng(seed).permutation(len(sents))[:n]}
    in_held, in_kept = inner(held), inner(s for s in sents if s not in held)
    label = {s: y for s, y in rows if s in held}
    train = [(s, y) for s, y in rows if s not in held and (s not in in_held or s in in_kept)]
    return train, [(s, label[s]) for s in sents if s in held]
