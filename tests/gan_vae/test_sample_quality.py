"""The sample-quality measurement: Frechet distance math (tier 1) and the classifier's scores on
real, noisy and collapsed image sets (tier 2, the cheap 'quick' classifier)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dlnotes.eval import sample_quality as SQ
from tests.conftest import needs_data


def test_frechet_distance_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert SQ.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)
    assert SQ.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    # 1-D Gaussians: (m1 - m2)^2 + (sd1 - sd2)^2
    assert SQ.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_to_unit_accepts_uint8_and_float_images():
    u8 = torch.full((2, 28, 28), 255, dtype=torch.uint8)
    assert SQ.to_unit(u8).shape == (2, 1, 28, 28) and SQ.to_unit(u8).max() == 1.0
    f = torch.rand(3, 1, 28, 28) * 2 - 0.5
    x = SQ.to_unit(f)
    assert x.min() >= 0 and x.max() <= 1
    assert SQ.to_unit(torch.rand(2, 1, 14, 14)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError):
        SQ.to_unit(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError):
        SQ.load_classifier("cifar10")


@needs_data("mnist")
def test_scores_separate_real_noise_and_collapsed_samples():
    from dlnotes.data.images import mnist

    x, y = mnist("test")
    real = SQ.score_samples(x[:2000], "mnist", labels=y[:2000], classifier="quick")
    assert real["sample_class_accuracy"] > 0.85  # the quick classifier's accuracy (~0.9)
    assert real["label_entropy"] > 2.2 and real["label_entropy"] <= math.log(10) + 1e-9
    noise = SQ.score_samples(torch.rand(2000, 28, 28), "mnist", labels=y[:2000], classifier="quick")
    assert noise["classifier_fid"] > 20 * max(real["classifier_fid"], 0.05)
    assert noise["sample_class_accuracy"] < 0.3
    collapsed = SQ.score_samples(x[:1].repeat(500, 1, 1), "mnist", classifier="quick")
    assert collapsed["max_class_share"] == 1.0 and collapsed["label_entropy"] < 0.5
    assert collapsed["classifier_fid"] > 10 * max(real["classifier_fid"], 0.05)
    floor = SQ.real_floor("mnist", classifier="quick")
    assert floor["classifier_fid"] < noise["classifier_fid"] / 20 and floor["label_entropy"] > 2.2
    assert SQ.classifier_info("mnist", "quick")["test_accuracy"] > 0.85
    # the test-set statistics every score uses are cached on disk: a new process reads them back
    mu, sigma = SQ.reference_stats("mnist", "quick")
    assert SQ._ref_path("mnist", "quick").exists()
    SQ._REF.pop(("mnist", "quick"))
    mu2, sigma2 = SQ.reference_stats("mnist", "quick")
    # (another xdist worker may have stored its own computation of them: equal up to float summation order)
    assert np.allclose(mu, mu2, rtol=1e-6, atol=1e-9) and np.allclose(sigma, sigma2, rtol=1e-6, atol=1e-9)


def test_retrained_classifier_deletes_its_predecessors_floor_and_statistics(tmp_path, monkeypatch):
    monkeypatch.setenv("DLNOTES_CACHE", str(tmp_path))
    monkeypatch.setattr(SQ, "_MODELS", {})
    monkeypatch.setattr(SQ, "_REF", {("mnist", "quick"): "stale"})
    monkeypatch.setattr(SQ, "train_classifier", lambda dataset, budget, log=None: (SQ.SampleClassifier(), 0.5))
    wpath, mpath = SQ._cache_paths("mnist", "quick")
    stale = [SQ._ref_path("mnist", "quick"), wpath.with_name(f"{wpath.stem}-floor10000.json")]
    other = wpath.with_name(wpath.name.replace("mnist", "fashion_mnist")).with_suffix(".json")
    for f in (*stale, other):
        f.write_text("old")
    SQ.load_classifier("mnist", "quick", verbose=False)
    assert wpath.exists() and mpath.exists()
    assert not any(f.exists() for f in stale) and ("mnist", "quick") not in SQ._REF
    assert other.exists()  # another dataset's cache is left alone


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_full_classifiers_reach_required_accuracy(dataset):
    """Trains (once, minutes) and caches the full classifiers; >= 99% MNIST, >= 90% Fashion-MNIST."""
    from tests.conftest import has_data

    if not has_data(dataset):
        pytest.skip(f"{dataset} not under DLNOTES_DATA")
    info = SQ.classifier_info(dataset, "full")
    assert info["test_accuracy"] >= SQ.REQUIRED_ACCURACY[dataset]
    floor = SQ.real_floor(dataset)
    assert floor["classifier_fid"] < 5.0 and floor["sample_class_accuracy"] >= SQ.REQUIRED_ACCURACY[dataset]
