"""Tier 3: every Lecture 12 recipe end to end with its quick preset, and `dlnotes sample` on the runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from dlnotes.cli import main as cli_main
from tests.conftest import needs_data


def _sample(run_dir, tmp_path, *extra):
    out = tmp_path / "grid.png"
    rc = cli_main(["sample", str(run_dir), "--n", "4", "--out", str(out), *extra])
    assert rc == 0
    return out


def _png_ok(path):
    img = Image.open(path)
    assert img.size[0] > 10 and img.size[1] > 10
    return img


@pytest.mark.parametrize("name", ["realnvp-mnist", "nice-mnist"])
def test_image_flow_quick_and_sample(run_recipe, tmp_path, name):
    run_dir, result = run_recipe(name)
    assert 0 < result["bits_per_dim"] < 12  # 8 = a uniform model; quick runs already learn
    assert result["target"]["metric"] == "bits_per_dim"
    assert (run_dir / "samples.png").exists()
    _png_ok(_sample(run_dir, tmp_path, "--length", "4"))
    lrs = [r["lr"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "lr" in r]
    if name == "nice-mnist":  # its presets decay the learning rate along half a cosine
        assert lrs[0] == pytest.approx(1e-3) and 0 < lrs[-1] < 1e-5
    else:
        assert set(lrs) == {1e-3}


def test_flow_2d_quick_makes_density_plot(run_recipe, capsys):
    run_dir, result = run_recipe("flow-2d-8gaussians", overrides=["steps=60"])
    assert result["realnvp_nll_nats"] < result["gaussian_nll_nats"]
    assert result["true_nll_nats"] < result["realnvp_nll_nats"]  # nothing beats the true density
    _png_ok(run_dir / "density.png")
    assert cli_main(["sample", str(run_dir), "--n", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_pixelcnn_quick_and_sample(run_recipe, tmp_path):
    run_dir, result = run_recipe("pixelcnn-mnist")
    assert result["nll_nats"] < 64 * 0.693  # below 1 bit per pixel on 8x8 binarised digits
    _png_ok(run_dir / "samples.png")
    _png_ok(_sample(run_dir, tmp_path))


def test_wavenet_quick_runs_print_receptive_field_and_sample(run_recipe, tmp_path):
    run_dir, result = run_recipe("wavenet-mulaw")
    assert result["receptive_field"] == 65 and (run_dir / "receptive_field.txt").read_text().strip() == "65"
    assert result["val_loss"] < result["order0_entropy"] + 0.5
    _png_ok(run_dir / "waveform.png")
    _png_ok(_sample(run_dir, tmp_path, "--length", "50"))
    run_dir, result = run_recipe("wavenet-shakespeare")
    assert result["val_loss"] < 3.5  # the built-in text has ~90 symbols: log 90 = 4.5
    assert (run_dir / "sample.txt").read_text()


def test_ddpm_quick_and_sample(run_recipe, tmp_path):
    run_dir, result = run_recipe("ddpm-mnist")
    assert result["steps"] > 0 and result["throughput"] > 0
    _png_ok(run_dir / "samples_ddpm.png")
    _png_ok(run_dir / "samples_ddim.png")
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    assert cfg["T"] == 200
    _png_ok(_sample(run_dir, tmp_path, "--length", "10"))  # DDIM, 10 steps
    noisy_dir, _ = run_recipe("ddpm-mnist", overrides=["ddim_eta=1"])  # the same weights, stochastic DDIM
    assert (noisy_dir / "samples_ddpm.png").read_bytes() == (run_dir / "samples_ddpm.png").read_bytes()
    assert (noisy_dir / "samples_ddim.png").read_bytes() != (run_dir / "samples_ddim.png").read_bytes()
    scaled_dir, _ = run_recipe("ddpm-mnist", overrides=["eps_scale=0.9"])  # Epsilon Scaling on the 1000-step sampler
    assert (scaled_dir / "samples_ddpm.png").read_bytes() != (run_dir / "samples_ddpm.png").read_bytes()
    assert (scaled_dir / "samples_ddim.png").read_bytes() == (run_dir / "samples_ddim.png").read_bytes()
    decayed_dir, _ = run_recipe("ddpm-mnist", overrides=["lr_decay=0.5"])  # training follows the decayed rate
    assert (decayed_dir / "samples_ddpm.png").read_bytes() != (run_dir / "samples_ddpm.png").read_bytes()


@needs_data("mnist")
def test_latent_diffusion_quick_and_sample(run_recipe, tmp_path):
    pixel = tmp_path / "pixel_run"  # stands in for a finished ddpm-mnist run
    pixel.mkdir()
    (pixel / "result.json").write_text(json.dumps({"classifier_fid": 40.0}))
    run_dir, result = run_recipe("latent-diffusion-mnist", overrides=["train_limit=1000", "epochs=1",
                                                                      f"pixel_run={pixel}"])
    assert result["latent_step_s"] > 0 and result["pixel_step_s"] > 0
    assert "classifier_fid" in result and "sample_confidence" in result
    assert result["pixel_classifier_fid"] == 40.0
    assert result["fid_ratio_to_pixel"] == pytest.approx(result["classifier_fid"] / 40.0)
    _png_ok(run_dir / "samples_ddpm.png")
    _png_ok(_sample(run_dir, tmp_path, "--length", "5"))
    # the samplers benchmark grades latent runs too: at the recipe's seeds it reproduces the run's own figure
    bench = _benchmark("ddpm_samplers")
    out = bench.main([str(run_dir), "--n", "16", "--samplers", "ddpm,ddim5_eta1,ddim5_eta1_lam0.8"])
    assert out["ddpm"]["classifier_fid"] == pytest.approx(result["classifier_fid"], rel=1e-5)
    assert out["ddim5_eta1"]["classifier_fid"] > 0
    assert out["ddim5_eta1_lam0.8"]["classifier_fid"] != out["ddim5_eta1"]["classifier_fid"]


def _benchmark(name: str):
    import importlib.util
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@needs_data("mnist")  # the grading classifier
def test_text_diffusion_quick_prompted_sampling(run_recipe, tmp_path):
    run_dir, result = run_recipe("text-diffusion-mnist")
    assert 0 <= result["sample_class_accuracy"] <= 1 and 0 <= result["paraphrase_sample_class_accuracy"] <= 1
    _png_ok(run_dir / "samples_prompted.png")
    _png_ok(run_dir / "samples_paraphrased.png")
    _png_ok(_sample(run_dir, tmp_path, "--prompt", "the number 7"))


def test_latent_diffusion_rejects_a_pixel_run_without_a_result_before_making_a_run(tmp_path, capsys):
    rc = cli_main(["run", "latent-diffusion-mnist", "--quick", "--set", f"pixel_run={tmp_path / 'nowhere'}",
                   "--runs", str(tmp_path / "runs")])
    assert rc != 0
    err = capsys.readouterr().err
    assert "pixel_run" in err and "nowhere" in err and not (tmp_path / "runs").exists()


def test_image_flow_rejects_unknown_lr_schedule_before_making_a_run(tmp_path, capsys):
    rc = cli_main(["run", "nice-mnist", "--quick", "--set", "lr_schedule=linear", "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert "lr_schedule" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_wavenet_rejects_a_negative_context_before_making_a_run(tmp_path, capsys):
    rc = cli_main(["run", "wavenet-shakespeare", "--quick", "--set", "context=-2", "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert "context: -2" in capsys.readouterr().err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("bad", ["ddim_eta=-0.1", "ddim_eta=1.5", "eps_scale=0", "ddim_eps_scale=3"])
def test_ddpm_rejects_bad_sampler_settings_before_making_a_run(tmp_path, capsys, bad):
    rc = cli_main(["run", "ddpm-mnist", "--quick", "--set", bad, "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert bad.replace("=", ": ") in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_text_diffusion_refuses_sample_amp_it_would_ignore_before_making_a_run(tmp_path, capsys):
    rc = cli_main(["run", "text-diffusion-mnist", "--quick", "--set", "sample_amp=true", "--runs",
                   str(tmp_path / "runs")])
    assert rc != 0
    assert "sample_amp: true" in capsys.readouterr().err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, says", [(["--samplers", "ddpm,ddim50_lam0"], "_lam suffix"),
                                        (["--samplers", "ddpm,ddim50_lamx"], "unknown sampler"),
                                        (["--samplers", "ddim50", "--base", "ddim50_lam0.95"], "--base")])
def test_ddpm_samplers_benchmark_refuses_bad_names_before_loading_a_run(tmp_path, argv, says):
    bench = _benchmark("ddpm_samplers")
    with pytest.raises(SystemExit) as err:  # tmp_path is no run: the names are checked first
        bench.main([str(tmp_path), *argv])
    assert says in str(err.value)
