"""Sub-word tokenizers for BERT and GPT-2 (Lecture 8), trained on our English corpus with HF ``tokenizers``.

* WordPiece (BERT): lower-cased, split on whitespace and punctuation, then each word is cut greedily
  into the longest pieces in the vocabulary; pieces after the first carry the prefix ``##``
  ("walking" -> ``walk ##ing`` once ``walk`` and ``##ing`` are frequent). Special tokens
  ``[PAD] [UNK] [CLS] [SEP] [MASK]``; a pair is encoded ``[CLS] A [SEP] B [SEP]`` with segment ids 0/1.
* Byte-level BPE (GPT-2): the text is mapped to bytes (256 symbols, so nothing is ever unknown), then
  the most frequent adjacent pair of symbols is merged repeatedly until the vocabulary is full, as
  in data compression. A leading space belongs to the word (``Ġwalking``). Special ``<|endoftext|>``.

The training text is the raw paragraph lines of the Wikipedia part of ``english_corpus`` (``wiki_99``
held out); trained tokenizers are cached as JSON under the dlnotes cache folder.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass

from ..data import cache_dir
from ..data import text as T
from ..data.registry import path
from ..engine import Run, recipe

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GPT_EOT = "<|endoftext|>"


def wiki_paragraphs(files: list[str], documents: bool = False):
    """Raw paragraph lines (original case) of the given ``enwiki/wiki_NN.gz`` files; titles and tags skipped.
    With ``documents``, one string per article instead: its paragraphs joined by spaces, in order."""
    for f in files:
        with gzip.open(path("english_corpus", f), "rt", encoding="utf-8") as fh:
            skip_title, doc = False, []
            for line in fh:
                if line.startswith("<doc"):
                    skip_title, doc = True, []
                    continue
                if line.startswith("</doc"):
                    if documents and doc:
                        yield " ".join(doc)
                    doc = []
                    continue
                if not line.strip():
                    continue
                if skip_title:
                    skip_title = False
                    continue
                if documents:
                    doc.append(line.strip())
                else:
                    yield line.strip()
            if documents and doc:  # a file cut inside an article
                yield " ".join(doc)


_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
_CLOSE = {",", ".", ";", ":", "?", "!", "...", ")", "%", "''"}
_OPEN = {"(", "$", "``"}
_BRACKETS = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}"}


def ptb_detokenize(text: str) -> str:
    """Undo Penn-Treebank-style tokenization, as SST-2's sentences carry it, so that a model pretrained on
    raw text reads them the way it read its corpus.

    ``it 's`` -> ``it's``, ``does n't`` / ``ca n't`` -> ``doesn't`` / ``can't``, ``word ,`` -> ``word,``,
    ``( word )`` -> ``(word)``; PTB's quotes (two backticks, two apostrophes) become straight double quotes and
    ``-lrb-``-style brackets become brackets.
    Case and every other token are kept. (Radford et al. 2019 apply such invertible de-tokenizers before
    evaluating GPT-2 on tokenized benchmarks.)
    """
    out: list[str] = []
    glue = False  # the previous token opens: the next one attaches to it
    for w in text.split():
        w = _BRACKETS.get(w, w)
        if out and not glue and (w in _CLITICS or w in _CLOSE):
            out[-1] += '"' if w == "''" else w
        elif out and glue:
            out[-1] += w
        else:
            out.append('"' if w == "``" else w)
        glue = w in _OPEN
    return " ".join(out)


def wiki_files(n: int, held_out: bool = False) -> list[str]:
    """The first ``n`` training files (wiki_00..), or the held-out ``wiki_99`` when ``held_out``."""
    return ["enwiki/wiki_99.gz"] if held_out else [f"enwiki/wiki_{i:02d}.gz" for i in range(min(n, 99))]


def builtin_paragraphs():
    return [ln.strip() for ln in T.builtin_text().splitlines() if len(ln.split()) > 3]


def _cached(kind: str, vocab_size: int, source: str, build):
    from tokenizers import Tokenizer

    key = hashlib.sha1(json.dumps([kind, vocab_size, source]).encode()).hexdigest()[:16]
    file = cache_dir() / f"tokenizer_{kind}_{key}.json"
    if file.exists():
        return Tokenizer.from_file(str(file))
    tok = build()
    tmp = file.with_name(f".{file.name}.tmp{os.getpid()}")
    tok.save(str(tmp))
    os.replace(tmp, file)
    return tok


def train_wordpiece(texts, vocab_size: int = 8000, source: str | None = None):
    """BERT's uncased WordPiece tokenizer trained on ``texts`` (an iterable of strings)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    def build():
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIALS, min_frequency=2)
        tok.train_from_iterator(texts, trainer)
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        tok.decoder = decoders.WordPiece()
        return tok
    return build() if source is None else _cached("wordpiece", vocab_size, source, build)


def train_byte_bpe(texts, vocab_size: int = 8000, source: str | None = None):
    """GPT-2's byte-level BPE trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def build():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[GPT_EOT], min_frequency=2,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(texts, trainer)
        return tok
    return build() if source is None else _cached("bytebpe", vocab_size, source, build)


def tokenizer_for(kind: str, corpus: str = "english", wiki: int = 20, vocab_size: int = 8000):
    """Cached tokenizer (``kind`` wordpiece | bytebpe) trained on ``wiki`` files or the built-in text."""
    if corpus == "builtin":
        texts, source = builtin_paragraphs, "builtin"
    else:
        files = wiki_files(wiki)
        texts, source = (lambda: wiki_paragraphs(files)), json.dumps(files)
    train = train_wordpiece if kind == "wordpiece" else train_byte_bpe
    return train(texts(), vocab_size, source=source)


def pieces(tok, word: str) -> list[str]:
    """How a tokenizer splits one word, e.g. pieces(wordpiece, "walking") -> ['walk', '##ing']."""
    return [t for t in tok.encode(word, add_special_tokens=False).tokens]


@dataclass
class TokenizerConfig:
    corpus: str = "english"  # english (Wikipedia part of english_corpus) | builtin (no download)
    wiki_files: int = 20  # files wiki_00.. to train on
    vocab_size: int = 8000  # vocabulary of each tokenizer
    eval_lines: int = 2000  # held-out (wiki_99) lines used to measure tokens per word


EXAMPLES = ["walking", "walked", "unbelievably", "tokenization", "anarchism", "photosynthesis"]


@recipe("tokenizers", lecture=8, section="BERT (word piece tokenization); GPT-2 (byte pair encoding)",
        config=TokenizerConfig, datasets=("english_corpus",),
        presets={"quick": {"corpus": "builtin", "vocab_size": 2000}})
def tokenizers_recipe(cfg: TokenizerConfig, run: Run) -> dict[str, float]:
    """WordPiece (BERT) and byte-level BPE (GPT-2) trained on the corpus: splits and tokens per word."""
    wp = tokenizer_for("wordpiece", cfg.corpus, cfg.wiki_files, cfg.vocab_size)
    bpe = tokenizer_for("bytebpe", cfg.corpus, cfg.wiki_files, cfg.vocab_size)
    if cfg.corpus == "builtin":
        held = builtin_paragraphs()[-cfg.eval_lines:]
    else:
        held = [ln for _, ln in zip(range(cfg.eval_lines), wiki_paragraphs(wiki_files(0, held_out=True)))]
    words = sum(len(T.WORD_RE.findall(ln.lower())) for ln in held)
    n_wp = sum(len(e.ids) - 2 for e in wp.encode_batch(held))  # minus [CLS] [SEP]
    n_bpe = sum(len(e.ids) for e in bpe.encode_batch(held))
    lines = [f"{w}: wordpiece {pieces(wp, w)}  byte-BPE {pieces(bpe, ' ' + w)}" for w in EXAMPLES]
    run.save_text("splits.txt", "\n".join(lines) + "\n")
    for ln in lines:
        run.print(ln)
    walking = pieces(wp, "walking")
    return {"wordpiece_vocab": wp.get_vocab_size(), "bpe_vocab": bpe.get_vocab_size(),
            "wordpiece_tokens_per_word": n_wp / max(words, 1), "bpe_tokens_per_word": n_bpe / max(words, 1),
            "walking_wordpiece_pieces": len(walking)}


def load_pretrained_run(run_dir, config_cls, build):
    """``(model, tokenizer, config)`` of a pretraining run: its saved config (as ``config_cls``), the
    ``tokenizer.json`` it trained, and ``build(cfg, tokenizer)`` loaded with the latest checkpoint."""
    from pathlib import Path

    from tokenizers import Tokenizer

    from ..engine.config import from_dict
    from ..engine.run import load_run_weights

    run_dir = Path(run_dir)
    cfg = from_dict(config_cls, json.loads((run_dir / "config.json").read_text())["config"])
    tok = Tokenizer.from_str((run_dir / "tokenizer.json").read_text())
    model = build(cfg, tok)
    model.load_state_dict(load_run_weights(run_dir))
    return model, tok, cfg
