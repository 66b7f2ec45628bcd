"""Tier 3: every Lecture 11 recipe runs --quick through the engine, and `dlnotes sample` writes a
PNG grid for each generator."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import needs_data

FAST = ["gan-mnist-dcgan", "wgan-gp-mnist", "cgan-mnist", "vae-mnist-20d", "conv-ae-mnist",
        "linear-ae-pca-mnist", "mode-collapse-ring", "cyclegan-mnist-digits", "gan-saturation"]
# same code paths as a FAST recipe with other config values
VARIANTS = ["gan-mnist-dcgan-saturating", "gan-mnist-mlp", "wgan-clip-mnist", "vae-mnist-2d", "mode-collapse-grid"]


def _sample(run_dir, n=16):
    from dlnotes.cli import main

    out = run_dir / "cli-grid.png"
    assert main(["sample", str(run_dir), "--n", str(n), "--out", str(out)]) == 0
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return out


def _check(run_recipe, name):
    run_dir, result = run_recipe(name)
    assert (run_dir / "result.json").exists()
    saved = json.loads((run_dir / "result.json").read_text())
    assert "wall_s" in saved and saved.get("target", {}).get("met") in (True, False, None)
    assert all(v == v for v in result.values() if isinstance(v, float))  # no NaN
    _sample(run_dir)
    return run_dir, result


@needs_data("mnist")
@pytest.mark.parametrize("name", FAST)
def test_recipe_quick_and_sample(run_recipe, name):
    run_dir, result = _check(run_recipe, name)
    if name in ("gan-mnist-dcgan", "wgan-gp-mnist", "cgan-mnist", "vae-mnist-20d", "conv-ae-mnist"):
        assert {"classifier_fid", "sample_confidence", "label_entropy", "floor_fid"} <= set(result)
        assert (run_dir / "samples.png").exists()
    if name == "cgan-mnist":
        assert 0.0 <= result["sample_class_accuracy"] <= 1.0
    if name == "vae-mnist-20d":
        assert 0 < result["nll_nats"] <= result["test_neg_elbo"] + 1.0
    if name == "mode-collapse-ring":
        assert 0 <= result["modes_covered"] <= 8 and (run_dir / "samples_ring8.png").exists()
    if name == "cyclegan-mnist-digits":
        assert result["digit_kept_min"] == min(result["digit_kept_a2b"], result["digit_kept_b2a"])
    if name == "linear-ae-pca-mnist":
        assert 0 <= result["max_principal_angle_deg"] <= 90
    if name == "gan-saturation":
        # both losses are compared at one start state: same G, D and z, so the same D(G(z))
        assert result["first_d_fake_saturating"] == result["first_d_fake_nonsaturating"]
        assert result["start_grad_ratio"] == pytest.approx(
            result["first_grad_norm_nonsaturating"] / result["first_grad_norm_saturating"])


@needs_data("mnist")
def test_dcgan_samples_its_ema_generator_with_standing_statistics(run_recipe):
    from dlnotes.generative.gan import GANConfig, ema_sampler, generate, make_generator
    from dlnotes.engine.run import load_run_weights

    run_dir, result = run_recipe("gan-mnist-dcgan", overrides=["ema=0.9", "steps=20"])
    assert "sample_confidence" in result
    _sample(run_dir)
    cfg = GANConfig(width=16)
    G = make_generator("dcgan", cfg.z_dim, cfg.width)
    G.load_state_dict(load_run_weights(run_dir, "G_ema"))
    averaged = generate(G, 8, cfg.z_dim)  # eval mode with the averaged running statistics
    measured = generate(ema_sampler(G, cfg.z_dim, batches=2, batch=64), 8, cfg.z_dim)
    assert not torch.allclose(averaged, measured)  # the statistics were re-measured, not the stored ones


@pytest.mark.slow
@needs_data("mnist")
@pytest.mark.parametrize("name", VARIANTS)
def test_variant_recipes_quick_and_sample(run_recipe, name):
    _check(run_recipe, name)


def test_vae_2d_manifold_figure():
    import torch

    from dlnotes.generative.vae import VAE, manifold_figure

    torch.manual_seed(0)
    fig = manifold_figure(VAE(784, 16, 2), n=5)
    assert fig.axes[0].images[0].get_array().shape == (5 * 28, 5 * 28)


@pytest.mark.parametrize("name, bad, message", [("cyclegan-mnist-digits", "downs=3", "downs: 3"),
                                               ("cyclegan-mnist-digits", "pool_size=-1", "pool_size: -1"),
                                               ("cyclegan-mnist-digits", "digits=mnist", "digits: 'mnist'"),
                                               ("gan-mnist-dcgan", "r1=-1", "r1: -1"),
                                               ("gan-mnist-dcgan", "lr_d=-0.1", "lr_d: -0.1"),
                                               ("gan-mnist-dcgan", "r1_every=0", "r1_every: 0")])
def test_gans_reject_bad_config_before_making_a_run(tmp_path, capsys, name, bad, message):
    from dlnotes.cli import main as cli_main

    rc = cli_main(["run", name, "--quick", "--set", bad, "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert message in capsys.readouterr().err and not (tmp_path / "runs").exists()
