"""Tier 3: every Lecture 8 embedding recipe runs end to end with --quick."""
from __future__ import annotations

import json

import pytest

from dlnotes.cli import main as cli_main
from dlnotes.sequence import word2vec as W
from tests.conftest import needs_data

RECIPES = ["word2vec-sgns", "word2vec-cbow-ns", "word2vec-sg-hs", "word2vec-cbow-hs", "word2vec-softmax", "glove"]


@pytest.mark.parametrize("name", RECIPES)
def test_quick_recipe_runs(run_recipe, name):
    run_dir, result = run_recipe(name)
    for key in ("analogy_accuracy", "wordsim_spearman", "corpus_tokens", "wall_s"):
        assert key in result
    assert (run_dir / "pca.png").exists() and (run_dir / "neighbours.txt").read_text().strip()
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["preset"] == "quick"


@pytest.mark.parametrize("name, over, stop, keys", [
    ("word2vec-sgns", ["impl=batched", "chunk_words=10000", "epochs=1"], 2, ["model/V"]),
    # GloVe stopped inside its 2nd epoch (28 steps each): the epoch's shuffle and the AdaGrad sums carry over
    ("glove", ["epochs=3", "impl=batched"], 40, ["model/U", "model/V", "model/b", "model/GU", "model/Gc"]),
    ("glove", ["epochs=3", "impl=numba", "threads=1"], 40, ["model/U", "model/V", "model/b", "model/GU", "model/Gc"])])
def test_resume_gives_the_same_vectors(run_recipe, monkeypatch, name, over, stop, keys):
    """Interrupt after a few steps and resume: the vectors equal an uninterrupted run's (batches depend only on
    (seed, step)). word2vec uses the deterministic single-thread batched kernel, GloVe each kernel on one thread."""
    import numpy as np
    from safetensors.torch import load_file

    if "impl=numba" in over:
        pytest.importorskip("numba")
    full_dir, full = run_recipe(name, overrides=over)
    monkeypatch.setenv("DLNOTES_STOP_AFTER", str(stop))
    with pytest.raises(KeyboardInterrupt):
        run_recipe(name, overrides=over)
    monkeypatch.delenv("DLNOTES_STOP_AFTER")
    part_dir = sorted((full_dir.parent).iterdir())[-1]
    from dlnotes.engine import execute
    execute(resume=part_dir, quiet=True)

    def tensors(d):
        ck = d / "checkpoints" / (d / "checkpoints" / "latest").read_text().strip()
        return load_file(str(ck / "weights.safetensors"))
    part, whole = tensors(part_dir), tensors(full_dir)
    for key in keys:
        np.testing.assert_allclose(part[key].numpy(), whole[key].numpy(), atol=1e-6, err_msg=key)
    if name == "glove":  # the logged epoch losses, the resumed epoch's included, match too
        def losses(d):
            rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
            return {r["epoch"]: r["loss"] for r in rows if "loss" in r}
        assert losses(part_dir) == pytest.approx(losses(full_dir), rel=1e-6) and len(losses(full_dir)) == 3
        assert losses(full_dir)[3] == pytest.approx(full["train_loss"], rel=1e-6)


@pytest.mark.parametrize("name, key, value", [
    ("glove", "x_max", "0"), ("glove", "lr", "-1"), ("glove", "window", "0"), ("glove", "batch", "0"),
    ("glove", "wiki_files", "100"), ("glove", "corpus", "wiki"), ("glove", "impl", "cuda"), ("glove", "threads", "0"),
    ("word2vec-sgns", "window", "0"),
    ("word2vec-sgns", "dim", "0"), ("word2vec-sgns", "negative", "-1"), ("word2vec-sgns", "min_lr", "1"),
    ("word2vec-sgns", "impl", "fortran"), ("word2vec-cbow-ns", "min_count", "0")])
def test_bad_values_are_refused_before_the_run(tmp_path, capsys, name, key, value):
    """Each used to crash mid-run (window 0, batch 0, dim 0, a negative count) or train garbage (x_max 0, a
    negative rate); now the CLI refuses it before making a run directory, naming the field."""
    assert cli_main(["run", name, "--quick", "--runs", str(tmp_path), "--set", f"{key}={value}"]) != 0
    assert f"error: {key}:" in capsys.readouterr().err
    assert not (tmp_path / name).exists()


def test_unknown_impl_is_an_error():
    corpus = W.build_corpus([["a", "b", "a", "b"]] * 5, 1)
    with pytest.raises(ValueError, match="impl must be"):
        W.train_word2vec(corpus, W.W2VConfig(dim=4, impl="fortran"))


PRETRAIN = ["tokenizers", "gpt2-pretrain", "bert-pretrain", "elmo-pretrain"]


@pytest.mark.parametrize("name", PRETRAIN)
def test_quick_pretraining_recipe_runs(run_recipe, name):
    import math

    _, result = run_recipe(name)
    if name == "tokenizers":
        assert result["walking_wordpiece_pieces"] >= 2
    elif name == "bert-pretrain":
        assert 0 <= result["nsp_accuracy"] <= 1 and math.isfinite(result["mlm_loss"])
    else:
        assert math.isfinite(result["val_ppl"]) and result["val_ppl"] < 2000  # below the uniform 2000-token model


def test_dlnotes_sample_on_a_gpt_quick_run(run_recipe, capsys):
    from dlnotes.cli import main

    run_dir, _ = run_recipe("gpt2-pretrain")
    assert main(["sample", str(run_dir), "--prompt", "The value", "--length", "12", "--temperature", "0.9",
                 "--top-k", "50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The value") and len(out.strip()) > len("The value")


@needs_data("sst2")
@pytest.mark.parametrize("kind", ["gpt2", pytest.param("bert", marks=pytest.mark.slow),
                                  pytest.param("elmo", marks=pytest.mark.slow)])
def test_quick_sst2_recipe_runs(run_recipe, kind):
    _, result = run_recipe(f"sst2-{kind}")
    for key in ("bow_accuracy", "pretrained_accuracy", "scratch_accuracy", "pretraining_gain"):
        assert 0 <= abs(result[key]) <= 1
    assert result["bow_accuracy"] > 0.55  # 600 sentences already beat chance with bag-of-words


@needs_data("sst2")
def test_sst2_seeds_repeat_each_fine_tune_and_report_the_means(run_recipe):
    """seeds=2 fine-tunes each copy twice from the same pretrained weights: seed 0 is the one-seed run exactly,
    seed 1 differs, and the reported accuracies and gain are the per-seed means."""
    run_dir, one = run_recipe("sst2-gpt2")
    _, two = run_recipe("sst2-gpt2", overrides=["seeds=2", f"pretrained={run_dir / 'pretrain'}"])
    for which in ("pretrained", "scratch"):
        assert two[f"{which}_accuracy_seed0"] == one[f"{which}_accuracy"]
        assert two[f"{which}_accuracy"] == pytest.approx((two[f"{which}_accuracy_seed0"]
                                                          + two[f"{which}_accuracy_seed1"]) / 2)
    assert two["pretraining_gain"] == pytest.approx(two["pretrained_accuracy"] - two["scratch_accuracy"])
    assert two["pretraining_gain_sd"] >= 0 and "pretraining_gain_sd" not in one
    assert (two["pretrained_accuracy_seed1"], two["scratch_accuracy_seed1"]) != (one["pretrained_accuracy"],
                                                                                 one["scratch_accuracy"])
    probe_dir, probed = run_recipe("sst2-gpt2", overrides=["probe=true", f"pretrained={run_dir / 'pretrain'}"])
    logged = [json.loads(line) for line in (probe_dir / "metrics.jsonl").read_text().splitlines()]
    fits = {k: v for rec in logged for k, v in rec.items() if k.endswith("_probe_train_accuracy")}
    assert set(fits) == {"pretrained_probe_train_accuracy", "scratch_probe_train_accuracy"}  # LP-FT: both copies
    assert all(0.5 <= v <= 1 for v in fits.values())  # the fitted head beats chance on its own training rows
    assert probed["pretrained_accuracy"] != one["pretrained_accuracy"]  # fine-tuning began from the fitted head


def test_elmo_rejects_a_negative_candidate_count_before_making_a_run(tmp_path, capsys):
    rc = cli_main(["run", "elmo-pretrain", "--quick", "--set", "sampled=-5", "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert "sampled: -5" in capsys.readouterr().err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("bad", ["adapt_epochs=-1", "adapt_lr=0", "holdout=-1", "lm_coef=0.5", "lm_coef=-1",
                                 "seeds=0", "probe_l2=-1", "pool=eot"])
def test_sst2_rejects_bad_settings_before_making_a_run(tmp_path, capsys, bad):
    rc = cli_main(["run", "sst2-elmo", "--quick", "--set", bad, "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert bad.split("=")[0] + ":" in capsys.readouterr().err and not (tmp_path / "runs").exists()


@needs_data("sst2")
def test_sst2_rejects_a_holdout_as_large_as_train_before_pretraining(tmp_path, capsys):
    rc = cli_main(["run", "sst2-elmo", "--quick", "--set", "holdout=100000", "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert "holdout: 100000" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*/*/pretrain"))  # nothing was pretrained first
