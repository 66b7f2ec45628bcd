"""n-gram language models (Lecture 6, "Markov and n-gram models").

The notes factorise ``P(w) = prod_t P(w_t | w_{t-1}, ..., w_1)`` and truncate the history to the
last ``n-1`` words. Counting gives the maximum-likelihood estimate ``c(h w) / c(h)``, which is
zero for anything unseen, so two smoothings are implemented:

* add-k:  ``P(w | h) = (c(h w) + k) / (c(h) + k |V|)``.
* interpolated modified Kneser-Ney (Chen & Goodman 1998, the form SRILM and KenLM use)::

    P_n(w | h) = max(a(h w) - D_n(a(h w)), 0) / sum_v a(h v)  +  gamma(h) P_{n-1}(w | h')
    gamma(h)   = (D_n1 N1(h .) + D_n2 N2(h .) + D_n3+ N3+(h .)) / sum_v a(h v)

  where ``a`` is the raw count at the highest order and the *continuation count*
  ``N1+(. g)`` (number of distinct words seen before ``g``) at lower orders, except for
  n-grams that start with ``<s>`` (nothing can precede them; their raw count is used).
  Discounts come from counts of counts: ``Y = n1/(n1 + 2 n2)``, ``D1 = 1 - 2Y n2/n1``,
  ``D2 = 2 - 3Y n3/n2``, ``D3+ = 3 - 4Y n4/n3``. The unigram level interpolates with the
  uniform distribution over the vocabulary, so every word, ``<unk>`` included, gets mass;
  an unseen history falls back to the next lower order.

Unknown words: the vocabulary is the training set's word types plus ``</s>`` and ``<unk>``;
evaluation maps any other word to ``<unk>`` (Penn Treebank already does so). Each sentence is
``<s> w_1 .. w_m </s>``, and ``w_1 .. w_m, </s>`` are predicted; perplexity is
``exp(-mean log P)`` over them. Counting and scoring are vectorised with numpy: an n-gram's id
is found by ``searchsorted`` on ``key = id(prefix) * |V| + last word``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..data import text as T
from ..engine import Run, Target, recipe

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


class NGramLM:
    """Interpolated modified Kneser-Ney (``smoothing="kn"``) or add-k (``"addk"``) of order ``n``."""

    def __init__(self, order: int = 5, smoothing: str = "kn", k: float = 1.0):
        if order < 1:
            raise ValueError("order must be >= 1")
        if smoothing not in ("kn", "addk"):
            raise ValueError(f"smoothing must be 'kn' or 'addk', not {smoothing!r}")
        self.n, self.smoothing, self.k = order, smoothing, k

    # ------------------------------------------------------------------ counting
    def fit(self, sentences: list[list[str]]) -> "NGramLM":
        words = sorted({w for s in sentences for w in s} - {BOS, EOS, UNK})
        self.itos = [BOS, EOS, UNK] + words
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.V = len(self.itos)
        self.n_pred = self.V - 1  # everything but <s> can be predicted
        tok, start = self._stream(sentences)
        n = self.n
        target = tok != 0  # positions that are predicted (not <s>)
        # gid[k][p]: id of the k-gram ending at position p (-1 if it crosses the sentence start)
        gid = {1: tok.astype(np.int64)}
        self.keys, self.count, self.ctx, self.suffix, self.first = {}, {}, {}, {}, {1: np.arange(self.V)}
        self.count[1] = np.bincount(tok[target], minlength=self.V).astype(np.int64)
        pos_in_sent = np.arange(len(tok)) - start
        for order in range(2, n + 1):
            ok = (pos_in_sent >= order - 1) & target
            prev = np.full(len(tok), -1, dtype=np.int64)
            prev[1:] = gid[order - 1][:-1]
            keys = prev * self.V + tok
            uniq, first_pos, inv, cnt = np.unique(keys[ok], return_index=True, return_inverse=True, return_counts=True)
            g = np.full(len(tok), -1, dtype=np.int64)
            g[np.flatnonzero(ok)] = inv
            gid[order] = g
            self.keys[order] = uniq
            self.count[order] = cnt.astype(np.int64)
            self.ctx[order] = uniq // self.V
            self.suffix[order] = gid[order - 1][np.flatnonzero(ok)[first_pos]]
            self.first[order] = self.first[order - 1][self.ctx[order]]
        if self.smoothing == "kn":
            self._kn_tables()
        else:
            self.ctx_total = {o: np.bincount(self.ctx[o], weights=self.count[o], minlength=self._n_ctx(o))
                              for o in range(2, n + 1)}
        return self

    def _stream(self, sentences):
        ids, starts = [], []
        for s in sentences:
            begin = len(ids)
            ids.append(0)
            ids.extend(self.stoi.get(w, 2) for w in s)
            ids.append(1)
            starts.extend([begin] * (len(s) + 2))
        return np.asarray(ids, dtype=np.int64), np.asarray(starts, dtype=np.int64)

    def _n_ctx(self, order: int) -> int:
        return self.V if order == 2 else len(self.keys[order - 1])

    def _kn_tables(self) -> None:
        n = self.n
        self.adj, self.D, self.denom, self.gamma = {}, {}, {}, {}
        for order in range(n, 0, -1):
            if order == n:
                a = self.count[order].copy()
            else:
                a = np.bincount(self.suffix[order + 1], minlength=len(self.count[order])).astype(np.int64)
                starts_bos = self.first[order] == 0
                a[starts_bos] = self.count[order][starts_bos]
            if order == 1:
                a[0] = 0  # <s> is never predicted
            self.adj[order] = a
            cc = np.bincount(a[a > 0], minlength=5)[:5]
            n1, n2, n3, n4 = (max(int(x), 1) for x in cc[1:5])
            y = n1 / (n1 + 2 * n2)
            self.D[order] = np.array([0.0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
            disc = self.D[order][np.minimum(a, 3)]
            if order == 1:
                total = a.sum()
                self.uni = (np.maximum(a - disc, 0) + disc.sum() / self.n_pred) / total
                self.uni[0] = 0.0
            else:
                m = self._n_ctx(order)
                self.denom[order] = np.bincount(self.ctx[order], weights=a, minlength=m)
                mass = np.bincount(self.ctx[order], weights=disc * (a > 0), minlength=m)
                with np.errstate(divide="ignore", invalid="ignore"):
                    self.gamma[order] = np.where(self.denom[order] > 0, mass / self.denom[order], 1.0)

    # ------------------------------------------------------------------ scoring
    def _lookup(self, order: int, prefix: np.ndarray, word: np.ndarray) -> np.ndarray:
        if order == 1:
            return word.copy()
        keys = self.keys[order]
        q = prefix * self.V + word
        i = np.searchsorted(keys, q)
        i = np.minimum(i, len(keys) - 1)
        hit = (prefix >= 0) & (keys[i] == q)
        return np.where(hit, i, -1)

    def prob(self, hist: np.ndarray, word: np.ndarray) -> np.ndarray:
        """P(word | hist) for a batch; ``hist`` is (M, n-1) token ids, oldest first, -1 = none."""
        M, h = hist.shape[0], self.n - 1
        # G[k][:, j]: id of the k-gram of history ending at column j
        G = {1: hist.astype(np.int64)}
        for k in range(2, h + 1):
            g = np.full((M, h), -1, dtype=np.int64)
            for j in range(k - 1, h):
                g[:, j] = self._lookup(k, G[k - 1][:, j - 1], hist[:, j])
            G[k] = g
        if self.smoothing == "addk":
            order = self.n
            if order == 1:
                return (self.count[1][word] + self.k) / (self.count[1].sum() + self.k * self.n_pred)
            ctx = G[order - 1][:, -1]
            gram = self._lookup(order, ctx, word)
            c = np.where(gram >= 0, self.count[order][np.maximum(gram, 0)], 0)
            tot = np.where(ctx >= 0, self.ctx_total[order][np.maximum(ctx, 0)], 0)
            return (c + self.k) / (tot + self.k * self.n_pred)
        p = self.uni[word]
        for order in range(2, self.n + 1):
            ctx = G[order - 1][:, -1]
            ok = ctx >= 0
            c = np.maximum(ctx, 0)
            denom = np.where(ok, self.denom[order][c], 0.0)
            seen = ok & (denom > 0)
            gram = self._lookup(order, np.where(ok, ctx, -1), word)
            a = np.where(gram >= 0, self.adj[order][np.maximum(gram, 0)], 0)
            disc = self.D[order][np.minimum(a, 3)]
            with np.errstate(divide="ignore", invalid="ignore"):
                higher = np.maximum(a - disc, 0) / np.where(seen, denom, 1.0) + self.gamma[order][c] * p
            p = np.where(seen, higher, p)
        return p

    def distribution(self, history: list[str]) -> np.ndarray:
        """P(. | history) over every predictable token (all but ``<s>``), in ``self.itos`` order."""
        ids = [self.stoi.get(w, 2) for w in history][-(self.n - 1):] if self.n > 1 else []
        row = [-1] * (self.n - 1 - len(ids)) + ids
        words = np.arange(1, self.V)
        hist = np.tile(np.asarray(row, dtype=np.int64), (len(words), 1)).reshape(len(words), self.n - 1)
        return self.prob(hist, words)

    def _histories(self, sentences):
        tok, start = self._stream(sentences)
        pos = np.arange(len(tok)) - start
        target = np.flatnonzero(tok != 0)
        h = self.n - 1
        hist = np.full((len(target), h), -1, dtype=np.int64)
        for j in range(h):  # column j holds the token h-j positions back
            back = h - j
            ok = pos[target] >= back
            hist[ok, j] = tok[target[ok] - back]
        return hist, tok[target]

    def log_prob(self, sentences: list[list[str]]) -> tuple[float, int]:
        """Total natural-log probability of the sentences and the number of predicted tokens."""
        total, count = 0.0, 0
        for i in range(0, len(sentences), 2000):
            hist, words = self._histories(sentences[i: i + 2000])
            total += float(np.log(self.prob(hist, words)).sum())
            count += len(words)
        return total, count

    def perplexity(self, sentences: list[list[str]]) -> float:
        lp, n = self.log_prob(sentences)
        return math.exp(-lp / n)


# ---------------------------------------------------------------------------- recipe
@dataclass
class NGramConfig:
    corpus: str = "ptb"  # ptb | builtin (standard-library text, split 80/10/10)
    order: int = 5  # highest n-gram order of the reported model
    smoothing: str = "kn"  # kn | addk
    k: float = 0.01  # add-k pseudo-count (for the add-k rows of the table)
    compare_orders: str = "2,3,4,5"  # orders reported side by side


def load_sentences(corpus: str) -> dict[str, list[list[str]]]:
    if corpus == "ptb":
        return {s: T.ptb(s) for s in ("train", "valid", "test")}
    if corpus == "builtin":
        sents = T.builtin_sentences()
        a, b = int(0.8 * len(sents)), int(0.9 * len(sents))
        return {"train": sents[:a], "valid": sents[a:b], "test": sents[b:]}
    raise ValueError(f"corpus must be 'ptb' or 'builtin', not {corpus!r}")


@recipe("ptb-kn5", lecture=6, section="Markov and n-gram models", config=NGramConfig, datasets=("ptb",),
        presets={"quick": {"corpus": "builtin", "compare_orders": "2,3"}},
        target=Target("test_ppl", "<=", 148, "Mikolov et al. 2011: KN5 on PTB, 141.2"))
def ptb_kn5(cfg: NGramConfig, run: Run) -> dict[str, float]:
    """Interpolated modified Kneser-Ney n-gram LM (orders 2-5) and add-k, test perplexity."""
    data = load_sentences(cfg.corpus)
    rows, result = [], {}
    orders = sorted({int(x) for x in cfg.compare_orders.split(",") if x.strip()} | {cfg.order})
    for smoothing in ("kn", "addk"):
        for order in orders:
            t0 = time.time()
            lm = NGramLM(order, smoothing, cfg.k).fit(data["train"])
            valid, test = lm.perplexity(data["valid"]), lm.perplexity(data["test"])
            rows.append((smoothing, order, valid, test, time.time() - t0))
            run.log(order, **{f"{smoothing}_valid_ppl": valid, f"{smoothing}_test_ppl": test})
            if smoothing == cfg.smoothing and order == cfg.order:
                result = {"test_ppl": test, "valid_ppl": valid, "vocab_size": lm.n_pred,
                          "train_tokens": int(sum(len(s) + 1 for s in data["train"]))}
    table = ["| smoothing | order | valid ppl | test ppl | seconds |", "|---|---|---|---|---|"]
    table += [f"| {s} | {o} | {v:.1f} | {t:.1f} | {sec:.1f} |" for s, o, v, t, sec in rows]
    run.save_text("ngram_table.md", "\n".join(table) + "\n")
    run.print("\n".join(table))
    return result
