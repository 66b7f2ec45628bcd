"""dlnotes word2vec (and GloVe) against gensim on the same corpus, same tokens, same settings.

Both sides see the same sentences (``english_corpus_lines``: lower-cased ``[a-z0-9]+('[a-z]+)?`` words,
one sentence per paragraph line, ``wiki_99`` held out) and the same settings: skip-gram, negative 5,
window 5, dim 100, min_count 5, sample 1e-3, lr 0.025 -> 1e-4, 1 epoch, 2 threads. Both are scored
by dlnotes.eval.wordvec (3CosAdd restricted to the 30k most frequent words; WordSim-353 Spearman);
gensim's own ``evaluate_word_analogies`` is reported too as a check of our evaluator.

    OMP_NUM_THREADS=2 DLNOTES_DATA=../shared/data .venv/bin/python benchmarks/word2vec_vs_gensim.py
    ... --wiki-files 30        # a subset: wiki_00 .. wiki_29
    ... --glove-epochs 15      # also train GloVe on the same corpus (the recipe's 15 epochs)

The last line printed is one JSON object (printed once after word2vec/gensim, again with GloVe added).
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def load_sentences(wiki_files: int, nltk: bool):
    from dlnotes.data import text as T

    files = [f"enwiki/wiki_{i:02d}.gz" for i in range(min(wiki_files, 99))]
    if nltk:
        files += [f for f in T.english_corpus_files() if f.startswith("nltk/")]
    table: dict[str, str] = {}
    # one shared str object per word type keeps ~16M tokens at 8 bytes each
    sentences = [[table.setdefault(w, w) for w in s] for s in T.english_corpus_lines(files)]
    return files, sentences


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--wiki-files", type=int, default=99, help="use wiki_00 .. wiki_{N-1} (at most 99)")
    p.add_argument("--nltk", action="store_true", help="add the NLTK corpora")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--impl", default="numba", help="dlnotes kernel: numba | batched")
    p.add_argument("--model", default="skipgram", help="skipgram | cbow (both sides)")
    p.add_argument("--sg-input", default="centre", help="skip-gram input side: centre (notes) | context (gensim)")
    p.add_argument("--glove-epochs", type=int, default=0, help="also train GloVe for this many epochs")
    p.add_argument("--skip-gensim", action="store_true")
    args = p.parse_args(argv)

    from dlnotes.eval import wordvec as E
    from dlnotes.sequence import word2vec as W

    t0 = time.time()
    files, sentences = load_sentences(args.wiki_files, args.nltk)
    corpus = W.build_corpus(sentences, args.min_count)
    print(f"corpus: {len(files)} files, {corpus.raw_tokens} tokens, vocabulary {len(corpus.words)} "
          f"(min_count {args.min_count}); loaded in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    out = {"corpus_tokens": corpus.raw_tokens, "corpus_files": len(files), "vocab": len(corpus.words),
           "threads": args.threads, "model": args.model}

    # --- dlnotes
    cfg = W.W2VConfig(model=args.model, objective="ns", dim=100, window=5, negative=5, sample=1e-3,
                      min_count=args.min_count, epochs=1, lr=0.025, min_lr=1e-4, impl=args.impl,
                      threads=args.threads, sg_input=args.sg_input)
    if args.impl == "numba":  # compile (or load the compiled kernels) outside the timed region
        tiny = W.build_corpus([["a", "b", "c", "a", "b"]] * 20, 1)
        W.train_word2vec(tiny, W.W2VConfig(dim=8, impl="numba", threads=args.threads, model=args.model))
    model = W.train_word2vec(corpus, cfg, seed=0)
    ours = E.evaluate(E.Embeddings(corpus.words, model.vectors()))
    out.update({"ours_train_s": round(model.train_seconds, 2),
                "ours_words_per_s": round(corpus.raw_tokens / model.train_seconds),
                "ours_analogy_accuracy": ours["analogy_accuracy"], "ours_wordsim_spearman": ours["wordsim_spearman"],
                "analogy_questions": ours["analogy_questions"], "ours_impl": args.impl, "ours_sg_input": args.sg_input})
    print(f"dlnotes: {out['ours_train_s']}s, analogy {ours['analogy_accuracy']:.4f}, "
          f"wordsim {ours['wordsim_spearman']:.4f}", file=sys.stderr, flush=True)

    # --- gensim, same sentences and settings
    if not args.skip_gensim:
        import gensim
        from gensim.models import Word2Vec

        g = Word2Vec(vector_size=100, window=5, min_count=args.min_count, sg=int(args.model == "skipgram"),
                     negative=5, hs=0, sample=1e-3, alpha=0.025, min_alpha=1e-4, workers=args.threads, seed=0,
                     epochs=1)
        g.build_vocab(sentences)
        t = time.time()
        g.train(sentences, total_examples=g.corpus_count, epochs=1)
        g_s = time.time() - t
        gres = E.evaluate(E.Embeddings.from_gensim(g.wv))
        from dlnotes.data.registry import path
        g_own, _ = g.wv.evaluate_word_analogies(str(path("wordsim", "questions-words.txt")), restrict_vocab=30000)
        out.update({"gensim_version": gensim.__version__, "gensim_train_s": round(g_s, 2),
                    "gensim_words_per_s": round(corpus.raw_tokens / g_s),
                    "gensim_analogy_accuracy": gres["analogy_accuracy"],
                    "gensim_analogy_accuracy_gensim_eval": g_own,
                    "gensim_wordsim_spearman": gres["wordsim_spearman"],
                    "speed_ratio": round(g_s / model.train_seconds, 3)})
        print(f"gensim: {g_s:.1f}s, analogy {gres['analogy_accuracy']:.4f} (gensim's evaluator {g_own:.4f}), "
              f"wordsim {gres['wordsim_spearman']:.4f}", file=sys.stderr, flush=True)

    # a JSON line now, so a run stopped during GloVe still ends with the word2vec comparison
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}), flush=True)

    # --- GloVe on the same corpus
    if args.glove_epochs:
        from dlnotes.sequence import glove as G

        gcfg = G.GloVeConfig(epochs=args.glove_epochs, min_count=args.min_count)
        t = time.time()
        gm, info = G.train_glove(corpus, gcfg, seed=0)
        gl = E.evaluate(E.Embeddings(corpus.words, gm))
        out.update({"glove_train_s": round(time.time() - t, 2), "glove_epochs": args.glove_epochs,
                    "glove_cooccurrences": info["nnz"], "glove_analogy_accuracy": gl["analogy_accuracy"],
                    "glove_wordsim_spearman": gl["wordsim_spearman"]})
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
