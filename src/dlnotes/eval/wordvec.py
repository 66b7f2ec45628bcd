"""Word-vector evaluation: Google analogies (3CosAdd), WordSim-353 Spearman, neighbours, a PCA plot.

Analogy ``a : b :: c : ?`` is answered by 3CosAdd over unit vectors ``x^ = x / |x|``:

    d* = argmax_{w not in {a, b, c}} cos(w, b^ - a^ + c^)

searching only the ``restrict`` most frequent words, and a question counts only when all four words
are among them: the protocol of gensim's ``evaluate_word_analogies(restrict_vocab=30000)``, so our
numbers and gensim's are comparable. Accuracy is correct / questions answered over all sections.

Word similarity is the Spearman rank correlation between cosine similarities and human scores over
the pairs whose two words are in the vocabulary (gensim's ``evaluate_word_pairs``).
"""
from __future__ import annotations

import numpy as np

from ..data import text as T

PCA_WORDS = ["man", "woman", "king", "queen", "boy", "girl", "father", "mother",
             "china", "beijing", "germany", "berlin", "greece", "athens", "russia", "moscow",
             "walk", "walking", "swim", "swimming", "run", "running",
             "one", "two", "three", "four"]


class Embeddings:
    """Words (most frequent first) and their vectors, with the unit-normalised copy used for cosines."""

    def __init__(self, words: list[str], vectors: np.ndarray):
        self.words = list(words)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.index = {w: i for i, w in enumerate(self.words)}
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self.unit = self.vectors / np.maximum(norms, 1e-12)

    @classmethod
    def from_gensim(cls, kv) -> "Embeddings":
        return cls(list(kv.index_to_key), kv.vectors)

    def similarity(self, a: str, b: str) -> float:
        return float(self.unit[self.index[a]] @ self.unit[self.index[b]])

    def nearest(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words with the highest cosine to ``word`` (itself excluded)."""
        sims = self.unit @ self.unit[self.index[word]]
        sims[self.index[word]] = -np.inf
        top = np.argpartition(-sims, k)[:k]
        top = top[np.argsort(-sims[top])]
        return [(self.words[i], float(sims[i])) for i in top]


def analogy_accuracy(emb: Embeddings, sections: dict | None = None, restrict: int = 30_000,
                     chunk: int = 1024) -> dict[str, float]:
    """3CosAdd accuracy on the Google analogy set, restricted to the ``restrict`` most frequent words."""
    sections = sections if sections is not None else T.analogies()
    r = min(restrict, len(emb.words))
    ok = {w: i for i, w in enumerate(emb.words[:r])}
    unit = emb.unit[:r]  # (R, d)
    correct, total, per = 0, 0, {}
    for name, questions in sections.items():
        q = np.array([[ok[w] for w in x] for x in questions if all(w in ok for w in x)], dtype=np.int64)
        c_sec = 0
        for s in range(0, len(q), chunk):
            a, b, c, d = q[s:s + chunk].T
            target = unit[b] - unit[a] + unit[c]  # (M, d); normalising it does not change the argmax
            sims = target @ unit.T  # (M, R)
            rows = np.arange(len(a))
            sims[rows, a] = sims[rows, b] = sims[rows, c] = -np.inf
            c_sec += int((sims.argmax(1) == d).sum())
        per[name] = (c_sec, len(q))
        correct += c_sec
        total += len(q)
    sem = [per[k] for k in per if not k.startswith("gram")]
    syn = [per[k] for k in per if k.startswith("gram")]
    frac = lambda xs: sum(c for c, _ in xs) / max(sum(n for _, n in xs), 1)  # noqa: E731
    return {"analogy_accuracy": correct / max(total, 1), "analogy_questions": total,
            "analogy_semantic": frac(sem), "analogy_syntactic": frac(syn)}


def spearman(x, y) -> float:
    """Spearman's rho: Pearson correlation of the ranks (ties get their average rank)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx ** 2).sum() * (ry ** 2).sum()))


def wordsim_spearman(emb: Embeddings, pairs=None) -> dict[str, float]:
    pairs = pairs if pairs is not None else T.word_similarity("wordsim353")
    used = [(a, b, s) for a, b, s in pairs if a in emb.index and b in emb.index]
    model = [emb.similarity(a, b) for a, b, _ in used]
    human = [s for _, _, s in used]
    return {"wordsim_spearman": spearman(model, human) if len(used) > 2 else float("nan"),
            "wordsim_pairs": len(used), "wordsim_oov": 1 - len(used) / max(len(pairs), 1)}


def evaluate(emb: Embeddings, restrict: int = 30_000) -> dict[str, float]:
    return {**analogy_accuracy(emb, restrict=restrict), **wordsim_spearman(emb)}


def pca_2d(x: np.ndarray) -> np.ndarray:
    """Project rows of x onto their first two principal components (SVD of the centred matrix)."""
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:2].T


def pca_plot(emb: Embeddings, words: list[str]):
    import matplotlib.pyplot as plt

    words = [w for w in words if w in emb.index]
    fig, ax = plt.subplots(figsize=(6, 5))
    if len(words) >= 3:
        xy = pca_2d(emb.unit[[emb.index[w] for w in words]])
        ax.scatter(xy[:, 0], xy[:, 1], s=12)
        for (x, y), w in zip(xy, words):
            ax.annotate(w, (x, y), fontsize=8, xytext=(2, 2), textcoords="offset points")
    ax.set_title("word vectors, first two principal components", fontsize=9)
    return fig
