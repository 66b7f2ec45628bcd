"""Sample quality of image generators measured with our own classifier (Lecture 11-12 models).

GAN papers report FID with Inception-v3 features, whose weights we cannot load offline. We define the
same quantities with a small convnet classifier trained once per dataset (MNIST, Fashion-MNIST) and
cached in ``dlnotes.data.cache_dir()``:

* **classifier-FID** (``classifier_fid``): the Frechet distance between Gaussians fitted to the
  classifier's penultimate features ``phi(x)`` (eval mode) of the real *test* set and of the samples,

      FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2}).

  Lower is better; only numbers computed with the same classifier and sample count compare.
* **classifier confidence** (``sample_confidence``): mean over samples of ``max_y p(y | x)``.
  Blurry or ambiguous samples lower it.
* **label entropy** (``label_entropy``, nats): entropy of the marginal ``p(y) = mean_x p(y | x)``;
  ``log 10 = 2.303`` when all ten classes are produced equally often, lower under mode collapse.
  ``classifier_score`` is ``exp(E_x KL(p(y|x) || p(y)))`` (the Inception Score computed with our net).
* **class accuracy** (``sample_class_accuracy``): for conditional models, the share of samples the
  classifier assigns to the class they were requested for.

:func:`real_floor` scores the real test set against 10k training images: no generator can be
expected to do better than real data, so report it beside any model's numbers.

API (images may be uint8 in 0..255 or float in [0, 1]; shape (N, 28, 28) or (N, 1, 28, 28))::

    score_samples(images, dataset="mnist", labels=None) -> dict
    real_floor(dataset="mnist") -> dict
    load_classifier(dataset="mnist") -> SampleClassifier   (trains and caches on first use)

``classifier="quick"`` selects a cheaper classifier (5k training images, one epoch, about 91%
accurate on MNIST) for smoke tests and ``--quick`` recipes; its numbers are not comparable with the
full classifier's.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import cache_dir
from ..data import images as I

LOADERS = {"mnist": I.mnist, "fashion_mnist": I.fashion_mnist}
VERSION = 1  # bump when the classifier or its training changes: invalidates the cache


@dataclass
class ClassifierBudget:
    n_train: int  # training images used (first n of a fixed permutation); 0 = all
    epochs: int  # passes over them
    batch: int = 128  # minibatch size
    lr: float = 2e-3  # Adam peak learning rate (cosine decay to 0)
    seed: int = 0  # initialisation and batch order


BUDGETS = {
    "full": {"mnist": ClassifierBudget(0, 3), "fashion_mnist": ClassifierBudget(0, 3)},
    "quick": {"mnist": ClassifierBudget(5000, 1), "fashion_mnist": ClassifierBudget(5000, 1)},
}
# test accuracy the full classifiers must reach (the requirement)
REQUIRED_ACCURACY = {"mnist": 0.99, "fashion_mnist": 0.90}


class SampleClassifier(nn.Module):
    """conv3x3(32)-BN-ReLU-pool -> conv3x3(64)-BN-ReLU-pool -> FC(128) features -> FC(10) logits."""

    feature_dim = 128

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.feature_dim), nn.ReLU(),  # (B, 128)
        )
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(self.feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x - 0.5)  # (B, 128) penultimate features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))  # (B, 10) logits


def to_unit(images) -> torch.Tensor:
    """uint8 0..255 or float [0, 1] images, (N, H, W) or (N, 1, H, W) -> float (N, 1, 28, 28) in [0, 1]."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    else:
        x = x.detach().float().cpu().clamp(0.0, 1.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"expected (N, 28, 28) or (N, 1, 28, 28) grey images, got shape {tuple(x.shape)}")
    if x.shape[-2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return x


def _check_dataset(dataset: str) -> None:
    if dataset not in LOADERS:
        raise ValueError(f"no sample-quality classifier for {dataset!r}; available: {', '.join(LOADERS)}")


def _cache_paths(dataset: str, classifier: str) -> tuple[Path, Path]:
    d = cache_dir() / "sample_quality"
    d.mkdir(parents=True, exist_ok=True)
    stem = f"{dataset}-{classifier}-v{VERSION}"
    return d / f"{stem}.safetensors", d / f"{stem}.json"


@torch.no_grad()
def accuracy(model: SampleClassifier, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = sum((model(to_unit(x[i:i + batch])).argmax(1) == y[i:i + batch]).sum().item()
                  for i in range(0, len(x), batch))
    return correct / len(x)


def train_classifier(dataset: str = "mnist", budget: ClassifierBudget | None = None,
                     log=None) -> tuple[SampleClassifier, float]:
    """Train the scoring classifier with Adam + cosine decay; return it (eval mode) and test accuracy."""
    _check_dataset(dataset)
    budget = budget or BUDGETS["full"][dataset]
    xtr, ytr = LOADERS[dataset]("train")
    xte, yte = LOADERS[dataset]("test")
    g = torch.Generator().manual_seed(budget.seed)
    if budget.n_train:
        keep = torch.randperm(len(xtr), generator=g)[: budget.n_train]
        xtr, ytr = xtr[keep], ytr[keep]
    torch.manual_seed(budget.seed)
    model = SampleClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=budget.lr)
    steps_per_epoch = len(xtr) // budget.batch
    total = steps_per_epoch * budget.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    model.train()
    step = 0
    for epoch in range(budget.epochs):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * budget.batch: (i + 1) * budget.batch]
            loss = F.cross_entropy(model(to_unit(xtr[idx])), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if log is not None and step % 100 == 0:
                log(f"[sample_quality] {dataset} epoch {epoch} step {step}/{total} loss {loss.item():.4f}")
    acc = accuracy(model, xte, yte)
    model.eval()
    return model, acc


_MODELS: dict[tuple[str, str], SampleClassifier] = {}


def load_classifier(dataset: str = "mnist", classifier: str = "full", verbose: bool = True) -> SampleClassifier:
    """The cached scoring classifier (eval mode); trained and cached atomically on first use."""
    from safetensors.torch import load_file, save_file

    _check_dataset(dataset)
    if classifier not in BUDGETS:
        raise ValueError(f"classifier must be one of {list(BUDGETS)}, not {classifier!r}")
    key = (dataset, classifier)
    if key in _MODELS:
        return _MODELS[key]
    wpath, mpath = _cache_paths(dataset, classifier)
    model = SampleClassifier()
    if wpath.exists() and mpath.exists():
        model.load_state_dict(load_file(str(wpath)))
    else:
        t0 = time.time()
        say = (lambda m: print(m, flush=True)) if verbose and not os.environ.get("DLNOTES_SILENT") else None
        if say:
            say(f"[sample_quality] training the {classifier} {dataset} classifier once; cached in {wpath.parent}")
        with torch.enable_grad():  # callers may hold torch.no_grad()
            model, acc = train_classifier(dataset, BUDGETS[classifier][dataset], log=say)
        need = REQUIRED_ACCURACY[dataset] if classifier == "full" else 0.0
        if acc < need and say:
            say(f"[sample_quality] WARNING: {dataset} classifier test accuracy {acc:.4f} < required {need}")
        meta = {"dataset": dataset, "classifier": classifier, "version": VERSION, "test_accuracy": acc,
                "meets_requirement": acc >= need,
                "budget": asdict(BUDGETS[classifier][dataset]), "train_seconds": round(time.time() - t0, 1)}
        pid = os.getpid()
        tmp_w, tmp_m = wpath.with_name(f".{wpath.name}.{pid}"), mpath.with_name(f".{mpath.name}.{pid}")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_w))
        tmp_m.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_w, wpath)  # weights first: the metadata file marks the cache complete
        os.replace(tmp_m, mpath)
        for stale in wpath.parent.glob(f"{wpath.stem}-*"):  # floor / reference stats of an older classifier
            stale.unlink(missing_ok=True)
        _REF.pop(key, None)
        if say:
            say(f"[sample_quality] {dataset} classifier test accuracy {acc:.4f} ({meta['train_seconds']} s)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    _MODELS[key] = model
    return model


def classifier_info(dataset: str = "mnist", classifier: str = "full") -> dict:
    """Metadata of the cached classifier (test accuracy, budget, training time)."""
    load_classifier(dataset, classifier)
    return json.loads(_cache_paths(dataset, classifier)[1].read_text())


@torch.no_grad()
def features_and_probs(images, dataset: str = "mnist", classifier: str = "full",
                       batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (N, 128) in float64 and class probabilities (N, 10) of ``images``."""
    model = load_classifier(dataset, classifier)
    feats, probs = [], []
    for i in range(0, len(images), batch):
        x = to_unit(images[i:i + batch])
        f = model.features(x)
        feats.append(f.double())
        probs.append(torch.softmax(model.head(f), dim=1).double())
    return torch.cat(feats), torch.cat(probs)


def gaussian_stats(feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features."""
    f = feats.double().numpy()
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) between two Gaussians.

    ``Tr (S1 S2)^{1/2}`` is the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``S1^{1/2} S2 S1^{1/2}`` (same spectrum as ``S1 S2``), which avoids a non-symmetric sqrtm.
    """
    mu1, mu2, s1, s2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, s1, s2))
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def _prob_scores(probs: torch.Tensor) -> dict[str, float]:
    p = probs.clamp_min(1e-12)
    marginal = p.mean(0)
    kl = (p * (p.log() - marginal.log())).sum(1).mean()
    return {"sample_confidence": p.max(1).values.mean().item(),
            "label_entropy": float(-(marginal * marginal.log()).sum()),
            "classifier_score": float(kl.exp()),
            "max_class_share": float(torch.bincount(p.argmax(1), minlength=p.shape[1]).max() / len(p))}


_REF: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def _ref_path(dataset: str, classifier: str) -> Path:
    wpath = _cache_paths(dataset, classifier)[0]
    return wpath.with_name(f"{wpath.stem}-ref.npz")


def _store_reference(dataset: str, classifier: str, stats: tuple[np.ndarray, np.ndarray]) -> None:
    """Keep the test-set feature statistics in memory and on disk (atomically, beside the classifier)."""
    _REF[(dataset, classifier)] = stats
    path = _ref_path(dataset, classifier)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(tmp, mu=stats[0], sigma=stats[1])
    os.replace(tmp, path)


def reference_stats(dataset: str = "mnist", classifier: str = "full") -> tuple[np.ndarray, np.ndarray]:
    """Feature mean and covariance of the 10k real test images (computed once per classifier, cached)."""
    key = (dataset, classifier)
    if key not in _REF:
        load_classifier(dataset, classifier)  # a retrained classifier deletes stale statistics first
        path = _ref_path(dataset, classifier)
        if path.exists():
            with np.load(path) as z:
                _REF[key] = (z["mu"], z["sigma"])
        else:
            xte, _ = LOADERS[dataset]("test")
            _store_reference(dataset, classifier, gaussian_stats(features_and_probs(xte, dataset, classifier)[0]))
    return _REF[key]


def score_samples(images, dataset: str = "mnist", labels=None, classifier: str = "full") -> dict[str, float]:
    """Score generated images against the real test set: classifier-FID, confidence, label entropy,
    classifier score, the largest single-class share, and (given ``labels``, the requested classes)
    ``sample_class_accuracy``. Use 10k samples for FIDs that compare with :func:`real_floor`."""
    if len(images) < 2:
        raise ValueError("need at least 2 samples to fit a covariance")
    feats, probs = features_and_probs(images, dataset, classifier)
    mu, sigma = gaussian_stats(feats)
    out = {"classifier_fid": frechet_distance(mu, sigma, *reference_stats(dataset, classifier)),
           **_prob_scores(probs), "n_samples": float(len(images))}
    if labels is not None:
        labels = torch.as_tensor(labels).long().cpu()
        out["sample_class_accuracy"] = (probs.argmax(1) == labels).double().mean().item()
    return out


def real_floor(dataset: str = "mnist", classifier: str = "full", n: int = 10000) -> dict[str, float]:
    """The real test set scored like a generator's samples, but against ``n`` training images:
    the best FID / confidence / entropy a perfect generator could hope for (cached)."""
    path = _cache_paths(dataset, classifier)[1].with_name(f"{dataset}-{classifier}-v{VERSION}-floor{n}.json")
    if path.exists():
        return json.loads(path.read_text())
    xtr, _ = LOADERS[dataset]("train")
    xte, yte = LOADERS[dataset]("test")
    keep = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))[:n]
    f_tr, _ = features_and_probs(xtr[keep], dataset, classifier)
    f_te, p_te = features_and_probs(xte, dataset, classifier)
    ref = gaussian_stats(f_te)
    _store_reference(dataset, classifier, ref)  # the same test-set statistics every score uses
    out = {"classifier_fid": frechet_distance(*ref, *gaussian_stats(f_tr)),
           **_prob_scores(p_te), "sample_class_accuracy": (p_te.argmax(1) == yte).double().mean().item(),
           "n_samples": float(len(xte))}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, path)
    return out
