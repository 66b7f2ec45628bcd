"""Loaders on the real files: counts, shapes and label ranges match the data README."""
import pytest
import torch

from dlnotes.data import images as I
from dlnotes.data import registry as R
from dlnotes.data import text as T
from tests.conftest import needs_data


def test_registry_lists_every_dataset_with_checksums():
    reg = R.registry()
    assert {"mnist", "fashion_mnist", "omniglot", "shakespeare", "timemachine", "ptb", "multi30k", "sst2",
            "wordsim", "tatoeba_fra_eng", "english_corpus"} <= set(reg)
    for name, d in reg.items():
        for f, info in d["files"].items():
            assert len(info["sha256"]) == 64 and info["bytes"] > 0, (name, f)


@needs_data("mnist", "fashion_mnist")
@pytest.mark.parametrize("loader,name", [(I.mnist, "mnist"), (I.fashion_mnist, "fashion_mnist")])
def test_idx_images(loader, name):
    splits = R.registry()[name]["splits"]
    for split in ("train", "test"):
        x, y = loader(split)
        assert x.shape == (splits[split]["n"], 28, 28) and x.dtype == torch.uint8
        assert torch.bincount(y, minlength=10).tolist() == splits[split]["label_counts"]
        assert abs(x.float().mean().item() - splits[split]["pixel_mean"]) < 1e-3


def test_builtin_digits_and_text():
    x, y = I.digits8x8()
    assert x.shape == (1797, 8, 8) and int(x.max()) == 255 and set(y.tolist()) == set(range(10))
    text = T.builtin_text()
    assert len(text) > 400_000 and "the" in text


@needs_data("omniglot")
@pytest.mark.parametrize("name,side", [("digits8x8", 8), ("digits", 28), ("digits20", 28)])
def test_builtin_digits_by_name_split_once_into_train_and_test(name, side):
    (xtr, ytr), (xte, yte) = I.by_name(name, "train"), I.by_name(name, "test")
    x, y = I.digits8x8()
    assert (len(xtr), len(xte)) == (1500, 297) and xtr.shape[1:] == (side, side) and xtr.dtype == torch.uint8
    assert torch.equal(torch.cat([ytr, yte]), y)  # every digit once, in order: train first, then test
    if name == "digits8x8":
        assert torch.equal(torch.cat([xtr, xte]), x)
    if name == "digits20":  # MNIST's framing: a blank 4-pixel border around a 20x20 box
        assert xtr[:, :4].sum() == 0 and xtr[:, :, -4:].sum() == 0 and xtr[:, 4:24, 4:24].sum() > 0
    from dlnotes.engine.config import ConfigError
    with pytest.raises(ConfigError, match="target: unknown image dataset 'svhn'"):  # names the config field
        I.by_name("svhn", key="target")


def test_omniglot_small_split_decodes_to_characters(tmp_path, monkeypatch):
    monkeypatch.setenv("DLNOTES_CACHE", str(tmp_path))
    imgs, names = I.omniglot("background_small1", size=28)
    assert imgs.shape == (136, 20, 28, 28) and len(names) == 136
    assert len({a for a, _ in names}) == 5
    ink = imgs.float().mean() / 255
    assert 0.02 < ink < 0.4  # strokes are ink (255) on a blank background (0)
    again, names2 = I.omniglot("background_small1", size=28)  # from the cache
    assert torch.equal(again, imgs) and names2 == names


@needs_data("ptb", "shakespeare", "timemachine")
def test_text_corpora_counts():
    splits = R.registry()["ptb"]["splits"]
    for split in ("train", "valid", "test"):
        sents = T.ptb(split)
        assert len(sents) == splits[split]["sentences"]
        assert sum(map(len, sents)) == splits[split]["tokens"]
    assert len({w for s in T.ptb("train") for w in s}) + 1 == R.registry()["ptb"].get("vocab_size_incl_eos", 10000)
    s = T.shakespeare()
    assert len(s) == 1115394 and len(set(s)) == 65
    assert len(T.timemachine()) == 178979


@needs_data("multi30k", "sst2", "wordsim", "tatoeba_fra_eng")
def test_pairs_classification_and_word_sets():
    assert [len(T.multi30k(s)) for s in ("train", "val", "test")] == [29000, 1014, 1000]
    de, en = T.multi30k("test")[0]
    assert de and en and de != en
    train, dev = T.sst2("train"), T.sst2("dev")
    assert len(train) == 67349 and len(dev) == 872
    assert sum(l for _, l in dev) == 444 and {l for _, l in train} == {0, 1}
    assert len(T.sst2("test")) == 1821
    assert len(T.word_similarity("wordsim353")) == 353 and len(T.word_similarity("simlex999")) == 999
    an = T.analogies()
    assert len(an) == 14 and sum(map(len, an.values())) == 19544
    assert len(T.tatoeba_fra_eng()) == 142787


@needs_data("english_corpus")
def test_english_corpus_tokenisation_matches_readme_counts():
    per_file = 163542  # words_regex of enwiki/wiki_00 in the data README
    n = sum(len(ws) for ws in T.english_corpus_lines(["enwiki/wiki_00.gz"]))
    assert n == per_file
    n_inaug = sum(len(ws) for ws in T.english_corpus_lines(["nltk/inaugural.zip"]))
    assert n_inaug == 132038


def test_vocab_round_trip_and_unk():
    v = T.Vocab.build("a b b c c c".split(), specials=("<unk>",), unk="<unk>")
    assert v.itos == ["<unk>", "c", "b", "a"]
    assert v.encode(["c", "zzz"]) == [1, 0] and v.decode([3, 2], sep=" ") == "a b"
    with pytest.raises(KeyError):
        T.Vocab(["x"]).encode(["y"])


def test_step_sampler_is_a_function_of_seed_and_step_and_shards_the_global_batch():
    from dlnotes.data.sampling import StepSampler

    full = StepSampler(100, 10, seed=3)
    a, b = StepSampler(100, 10, seed=3, rank=0, world_size=2), StepSampler(100, 10, seed=3, rank=1, world_size=2)
    for step in (0, 5, 13):
        assert torch.equal(torch.cat([a.indices(step), b.indices(step)]), full.indices(step))
    epoch0 = torch.cat([full.indices(s) for s in range(10)])
    assert sorted(epoch0.tolist()) == list(range(100))
    assert not torch.equal(full.indices(0), full.indices(10))  # reshuffled next epoch


def test_length_bucket_sampler_groups_lengths_covers_each_example_once_and_shards():
    from dlnotes.data.sampling import LengthBucketSampler

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (1000,), generator=g)
    full = LengthBucketSampler(lengths, 20, seed=1, pool=10)
    epoch0 = [full.indices(s) for s in range(full.steps_per_epoch)]
    flat = torch.cat(epoch0).tolist()
    assert len(flat) == len(set(flat)) == 1000  # every example once
    # a batch spans a small slice of the length range; a random batch of 20 spans most of it
    spread = torch.tensor([float(lengths[b].max() - lengths[b].min()) for b in epoch0]).mean()
    assert spread < 10, spread
    random_batches = [lengths[torch.randperm(1000, generator=g)[:20]] for _ in range(20)]
    assert torch.tensor([float(b.max() - b.min()) for b in random_batches]).mean() > 40
    # the batch order is shuffled (not sorted by length across the epoch), reshuffled next epoch
    means = [float(lengths[b].float().mean()) for b in epoch0]
    assert means != sorted(means) and means != sorted(means, reverse=True)
    assert not torch.equal(full.indices(0), full.indices(full.steps_per_epoch))
    # a pure function of (seed, step), and ranks split the global batch
    again = LengthBucketSampler(lengths, 20, seed=1, pool=10)
    assert torch.equal(again.indices(37), full.indices(37))
    ranks = [LengthBucketSampler(lengths, 20, seed=1, rank=r, world_size=2, pool=10) for r in (0, 1)]
    assert torch.equal(torch.cat([r.indices(7) for r in ranks]), full.indices(7))
    with pytest.raises(ValueError, match="pool"):
        LengthBucketSampler(lengths, 20, pool=0)
