"""Metrics shared across topics (perplexity, BLEU, word-vector scores, sample quality, few-shot accuracy)."""
