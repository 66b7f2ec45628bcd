"""Text datasets: Tiny Shakespeare, The Time Machine, Penn Treebank, Multi30k, SST-2, Tatoeba,
word-similarity and analogy sets, the English corpus, and built-in text from the standard library.

Also the small :class:`Vocab` used by word- and character-level models.
"""
from __future__ import annotations

import gzip
import io
import re
import zipfile
from collections import Counter
from dataclasses import dataclass

from .registry import data_root, path

WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass
class Vocab:
    """Token <-> id map; ``unk`` (if given) absorbs tokens outside the vocabulary."""
    itos: list[str]
    unk: str | None = None

    def __post_init__(self):
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens) -> list[int]:
        if self.unk is None:
            missing = [t for t in tokens if t not in self.stoi]
            if missing:
                raise KeyError(f"tokens not in the vocabulary and no unk token: {missing[:5]}")
            return [self.stoi[t] for t in tokens]
        u = self.stoi[self.unk]
        return [self.stoi.get(t, u) for t in tokens]

    def decode(self, ids, sep: str = "") -> str:
        return sep.join(self.itos[int(i)] for i in ids)

    @classmethod
    def build(cls, tokens, min_count: int = 1, specials=(), unk: str | None = None, max_size: int | None = None):
        counts = Counter(tokens)
        items = sorted((t for t, c in counts.items() if c >= min_count and t not in specials),
                       key=lambda t: (-counts[t], t))
        if max_size is not None:
            items = items[: max_size - len(specials)]
        return cls(list(specials) + items, unk=unk)


# ----------------------------------------------------------------------------- character corpora
def shakespeare() -> str:
    return path("shakespeare", "input.txt").read_text(encoding="utf-8")


def timemachine() -> str:
    return path("timemachine", "timemachine.txt").read_text(encoding="utf-8")


def builtin_text() -> str:
    """English prose shipped with CPython (the help topics of ``pydoc_data``): no download needed."""
    from pydoc_data import topics

    parts = [topics.topics[k] for k in sorted(topics.topics)]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- Penn Treebank
def ptb(split: str) -> list[list[str]]:
    """Mikolov's PTB: ``split`` in train/valid/test; a list of sentences (lists of words).
    The text already maps rare words to ``<unk>`` (10k-word vocabulary)."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"PTB split must be train, valid or test, not {split!r}")
    text = path("ptb", f"ptb.{split}.txt").read_text(encoding="utf-8")
    return [ln.split() for ln in text.splitlines() if ln.strip()]


def builtin_sentences() -> list[list[str]]:
    """Word sentences from :func:`builtin_text`, lower-cased, one per non-empty line."""
    out = []
    for line in builtin_text().splitlines():
        words = WORD_RE.findall(line.lower())
        if words:
            out.append(words)
    return out


# ----------------------------------------------------------------------------- translation pairs
def multi30k(split: str) -> list[tuple[str, str]]:
    """(German, English) sentence pairs; ``split`` in train / val / test (test_2016_flickr)."""
    stem = {"train": "train", "val": "val", "valid": "val", "test": "test_2016_flickr"}.get(split)
    if stem is None:
        raise ValueError(f"Multi30k split must be train, val or test, not {split!r}")
    de = gzip.decompress(path("multi30k", f"{stem}.de.gz").read_bytes()).decode("utf-8").splitlines()
    en = gzip.decompress(path("multi30k", f"{stem}.en.gz").read_bytes()).decode("utf-8").splitlines()
    if len(de) != len(en):
        raise ValueError(f"Multi30k {split}: {len(de)} German lines but {len(en)} English lines")
    return list(zip(de, en))


def tatoeba_fra_eng() -> list[tuple[str, str]]:
    """(English, French) pairs from the manythings.org export."""
    with zipfile.ZipFile(path("tatoeba_fra_eng", "fra-eng.zip")) as z:
        text = z.read("fra.txt").decode("utf-8")
    return [tuple(ln.split("\t")[:2]) for ln in text.splitlines() if "\t" in ln]


# ----------------------------------------------------------------------------- classification
def sst2(split: str) -> list[tuple[str, int]]:
    """SST-2 (GLUE): (sentence, label) for train / dev; test is unlabeled (label -1)."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"SST-2 split must be train, dev or test, not {split!r}")
    lines = path("sst2", f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for ln in lines:
        a, b = ln.split("\t")
        out.append((b.strip(), -1) if split == "test" else (a.strip(), int(b)))
    return out


# ----------------------------------------------------------------------------- word similarity
def word_similarity(name: str = "wordsim353") -> list[tuple[str, str, float]]:
    file = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}[name]
    out = []
    for ln in path("wordsim", file).read_text(encoding="utf-8").splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        a, b, s = ln.split("\t")[:3]
        out.append((a.lower(), b.lower(), float(s)))
    return out


def analogies() -> dict[str, list[tuple[str, str, str, str]]]:
    """Google analogy questions by section: ``a b c d`` meaning a:b :: c:d (lower-cased)."""
    sections: dict[str, list] = {}
    current = None
    for ln in path("wordsim", "questions-words.txt").read_text(encoding="utf-8").splitlines():
        if ln.startswith(":"):
            current = ln[1:].strip()
            sections[current] = []
        elif ln.strip():
            sections[current].append(tuple(ln.lower().split()))
    return sections


# ----------------------------------------------------------------------------- English corpus
def english_corpus_files() -> list[str]:
    from .registry import dataset
    return sorted(dataset("english_corpus")["files"])


def english_corpus_lines(files: list[str] | None = None):
    """Yield lower-cased word lists, one per paragraph line, tokenised as the data README says.
    ``files`` defaults to everything except ``enwiki/wiki_99.gz`` (held out)."""
    files = files or [f for f in english_corpus_files() if f != "enwiki/wiki_99.gz"]
    for f in files:
        p = path("english_corpus", f)
        if f.endswith(".gz"):
            with gzip.open(p, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("<doc") or line.startswith("</doc"):
                        continue
                    words = WORD_RE.findall(line.lower())
                    if words:
                        yield words
        else:
            with zipfile.ZipFile(p) as z:
                for member in sorted(z.namelist()):
                    if member.endswith("/") or member.endswith(".pickle") or "README" in member \
                            or member.endswith("cats.txt") or member.endswith("CONTENTS"):
                        continue
                    text = z.read(member).decode("latin-1")
                    for line in io.StringIO(text):
                        if "brown" in f:
                            line = " ".join(t.rsplit("/", 1)[0] for t in line.split())
                        words = WORD_RE.findall(line.lower())
                        if words:
                            yield words


def present() -> dict[str, bool]:
    from .registry import registry
    return {name: (data_root() / name).exists() for name in registry()}
