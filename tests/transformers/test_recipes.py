"""Tier 2 (character GPT on real text) and tier 3 (recipes end to end, `dlnotes sample`)."""
import json
import math

import pytest
import torch

from dlnotes.sequence.char_gpt import CharGPTConfig, batch_seed, build_model, evaluate_full, get_batch, load_chars, \
    lr_at, make_optimizer
from tests.conftest import needs_data


def test_batches_are_a_pure_function_of_the_seed_and_targets_are_shifted():
    data = torch.arange(1000)
    x1, y1 = get_batch(data, 4, 16, seed=7)
    x2, _ = get_batch(data, 4, 16, seed=7)
    x3, _ = get_batch(data, 4, 16, seed=8)
    assert torch.equal(x1, x2) and not torch.equal(x1, x3)
    assert torch.equal(y1, x1 + 1)  # arange data: the next character is the id plus one


def test_each_run_seed_and_rank_draws_its_own_batches():
    seeds = {batch_seed(seed, rank, step) for seed in range(3) for rank in range(2) for step in range(100)}
    assert len(seeds) == 600  # no two (seed, rank, step) share a draw
    assert batch_seed(0, 1, 5) == (1 * 1_000_003 + 5) * 31 + 17  # seed 0 keeps the draws of earlier runs


def test_nanogpt_preset_is_nanogpts_config_and_char_gpt_keeps_its_tokens_per_step():
    from dlnotes.engine import recipes as R

    R.load_all()
    nano = R.get("char-gpt-nanogpt").make_config("nanogpt")
    assert (nano.n_layers, nano.n_heads, nano.d_model, nano.context, nano.batch_size, nano.iters) == \
        (4, 4, 128, 64, 12, 2000)
    assert (nano.lr, nano.min_lr, nano.warmup, nano.beta2, nano.weight_decay, nano.dropout, nano.bias) == \
        (1e-3, 1e-4, 100, 0.99, 0.1, 0.0, False)
    ours = R.get("char-gpt-nanogpt").make_config("full")  # the same model and data, dlnotes' learning rate
    assert (ours.n_layers, ours.d_model, ours.batch_size, ours.context, ours.iters) == (4, 128, 12, 64, 2000)
    best = R.get("char-gpt").make_config("full")
    assert best.batch_size * best.context == 12 * 64 and best.d_model % best.n_heads == 0
    for name in ("char-gpt", "char-gpt-nanogpt"):
        quick = R.get(name).make_config("quick")
        assert quick.d_model % quick.n_heads == 0


def test_learning_rate_warms_up_then_decays_to_min_lr():
    cfg = CharGPTConfig(lr=1e-3, min_lr=1e-4, warmup=100, iters=2000)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(1050, cfg) == pytest.approx(5.5e-4)
    assert lr_at(2000, cfg) == pytest.approx(1e-4)


@needs_data("shakespeare")
def test_char_gpt_lowers_its_loss_on_shakespeare_within_seconds():
    """Tier 2: 150 steps of a 2x64 GPT bring the validation loss from ln 65 = 4.17 to below 2.65."""
    torch.manual_seed(0)
    train, val, itos = load_chars("shakespeare")
    cfg = CharGPTConfig(n_layers=2, d_model=64, n_heads=4, context=32, batch_size=32, iters=150, lr=3e-3,
                        warmup=10, min_lr=3e-4)
    model = build_model(cfg, len(itos))
    opt = make_optimizer(model, cfg)
    before = evaluate_full(model, val[:20000], cfg.context, "cpu")
    for step in range(cfg.iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        x, y = get_batch(train, cfg.batch_size, cfg.context, step)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate_full(model, val[:20000], cfg.context, "cpu")
    assert before > 4.0
    assert after < 2.65, after


def _sample(run_dir, capsys, *extra):
    from dlnotes.cli import main

    assert main(["sample", str(run_dir), *extra]) == 0
    return capsys.readouterr().out


def test_char_gpt_quick_recipe_and_sample(run_recipe, capsys):
    run_dir, result = run_recipe("char-gpt-nanogpt")
    assert result["val_loss"] < 3.3  # well below ln(vocab) ~ 4.5 of the built-in text
    assert result["throughput"] > 0 and 0 < result["mfu"] < 1
    assert (run_dir / "sample.txt").exists()
    text = _sample(run_dir, capsys, "--prompt", "The ", "--length", "40", "--top-k", "5")
    assert text.startswith("The ") and len(text.rstrip("\n")) >= 40
    again = _sample(run_dir, capsys, "--prompt", "The ", "--length", "40", "--top-k", "5")
    assert again == text  # same seed, same passage
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["n_layers"] == 2


@needs_data("multi30k")
@pytest.mark.parametrize("name", ["multi30k-transformer", "multi30k-gru-attention", "multi30k-gru"])
def test_translation_quick_recipes_and_sample(name, run_recipe, capsys):
    run_dir, result = run_recipe(name)
    assert 0 <= result["bleu"] <= 100 and math.isfinite(result["val_loss"])
    assert result["val_loss"] < math.log(800)  # better than uniform over the 800-piece vocabulary
    assert (run_dir / "test_translations.txt").exists()
    if name == "multi30k-gru-attention":
        assert (run_dir / "attention.png").exists()
    out = _sample(run_dir, capsys, "--src", "Ein Mann fährt Fahrrad.")
    assert out.strip() and "<unk>" not in out


def test_translation_rejects_a_negative_bucket_before_making_a_run(tmp_path, capsys):
    from dlnotes.cli import main as cli_main

    rc = cli_main(["run", "multi30k-transformer", "--quick", "--set", "bucket=-1", "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert "bucket: -1" in capsys.readouterr().err and not (tmp_path / "runs").exists()
