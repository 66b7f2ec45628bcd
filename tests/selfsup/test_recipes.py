"""Tier 3: the self-supervised recipes' quick presets and the `dlnotes classify` command."""
import numpy as np
import pytest
import torch

from tests.conftest import needs_data


@pytest.mark.parametrize("name", ["simclr-fashion", "pretext-rotation", "pretext-jigsaw"])
def test_quick_selfsup_recipe(run_recipe, name):
    """Quick presets use the built-in 8x8 digits: the probe must beat chance (10%) clearly."""
    run_dir, result = run_recipe(name)
    assert result["accuracy"] > 0.3, result
    assert result["knn_accuracy"] > 0.3, result
    assert (run_dir / "result.json").exists()


@needs_data("fashion_mnist")
def test_quick_transfer_recipe(run_recipe):
    run_dir, result = run_recipe("transfer-few-labels")
    for k in (1, 10):
        for name in ("probe", "finetune", "scratch"):
            assert 0.0 <= result[f"{name}_acc_k{k}"] <= 1.0
    assert result["probe_acc_k10"] > 0.2, result
    assert (run_dir / "transfer.png").exists()


def test_quick_clip_and_classify_cli(run_recipe, tmp_path, capsys):
    run_dir, result = run_recipe("clip-mnist-fashion")
    assert result["zeroshot_mnist"] > 0.2, result  # 10 classes, prompts unseen in training
    assert result["mnist_i2t_recall@10"] > 0.1 and result["probe_mnist"] > 0.5, result
    # a user's image: dark "1" on a white page, classified by the CLI
    img = np.full((40, 30), 255, dtype=np.uint8)
    img[5:35, 14:17] = 0
    from PIL import Image

    path = tmp_path / "one.png"
    Image.fromarray(img).save(path)
    from dlnotes.cli import main

    labels = "the digit one,the digit zero,the digit eight"
    assert main(["classify", "--run", str(run_dir), str(path), "--labels", labels]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and all("%" in ln for ln in out)
    probs = [float(ln.split("%")[0]) for ln in out]
    assert abs(sum(probs) - 100) < 0.1 and probs == sorted(probs, reverse=True)
    assert main(["classify", "--run", str(run_dir), str(tmp_path / "missing.png"), "--labels", labels]) == 3
    assert main(["classify", "--run", str(run_dir), str(path), "--labels", "only one"]) == 2


def test_classify_preprocess_inverts_and_centres(tmp_path):
    from PIL import Image

    from dlnotes.selfsup.classify import preprocess

    img = np.full((50, 80), 250, dtype=np.uint8)
    img[10:20, 5:25] = 10  # a dark blob in the top-left corner of a light page
    Image.fromarray(img).save(tmp_path / "blob.png")
    x = preprocess(tmp_path / "blob.png")
    assert x.shape == (28, 28) and x.dtype == torch.uint8
    assert x[0].max() == 0 and x[14, 14] > 200  # inverted (ink bright) and centred
