"""BLEU (Papineni et al. 2002): corpus-level modified n-gram precision with a brevity penalty.

    p_n = sum_sentences sum_{g in n-grams(hyp)} min(count_hyp(g), count_ref(g)) / sum (n-grams in hyp)
    BP  = 1 if c > r else exp(1 - r / c)          (c, r: total hypothesis and reference lengths)
    BLEU = 100 * BP * exp( (1/4) sum_{n=1..4} log p_n )

:func:`bleu` is the number we report: sacrebleu's corpus BLEU on detokenised text (its standard
13a tokenisation, so scores are comparable across tokenisers). :func:`token_bleu` is the same
formula written out on already tokenised sentences (the "tokenised BLEU" of many tutorials); a test
checks it against sacrebleu with ``tokenize="none"``.
"""
from __future__ import annotations

import math
from collections import Counter


def bleu(hypotheses: list[str], references: list[str], lowercase: bool = False) -> float:
    """sacrebleu corpus BLEU (0-100) of detokenised hypotheses against one reference each."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    return float(sacrebleu.corpus_bleu(hypotheses, [references], lowercase=lowercase).score)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))


def token_bleu(hypotheses: list[list[str]], references: list[list[str]], max_n: int = 4) -> float:
    """Corpus BLEU (0-100) on token lists, one reference per hypothesis, no smoothing."""
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp_len += len(hyp)
        ref_len += len(ref)
        for n in range(1, max_n + 1):
            h, r = _ngrams(hyp, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(c, r[g]) for g, c in h.items())  # clipped counts
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * bp * math.exp(log_p)
