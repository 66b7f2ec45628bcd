"""Evaluating learned features: linear probe, k-nearest neighbours, fine-tuning, label subsets.

After self-supervised pretraining the notes drop the projection head and put a linear classifier
on the encoder ``g``: either the encoder is frozen (*linear probe*: multinomial logistic regression
on the features, here fitted with L-BFGS on standardised features, its L2 penalty chosen by
cross-validation on the labelled examples) or every weight is trained (*fine-tuning*).
Supervised training from scratch on the same labels is the baseline.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..data.images import by_name
from ..engine.config import ConfigError
from ..nn.backbones import to_float


def load_images(name: str, key: str = "dataset"):
    """``(x_train, y_train, x_test, y_test)`` uint8 images and labels; ``digits`` is the built-in
    8x8 set (first 1500 for training, the rest for testing). ``key`` names the config field in errors."""
    if name not in ("fashion_mnist", "mnist", "digits"):
        raise ConfigError(f"{key}: unknown dataset {name!r}; use fashion_mnist, mnist or digits")
    name = "digits8x8" if name == "digits" else name
    return (*by_name(name, "train"), *by_name(name, "test"))


def label_subset(y: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Indices of a class-balanced ``fraction`` of the labels (at least one per class)."""
    g = torch.Generator().manual_seed(seed)
    classes = y.unique()
    per_class = max(1, round(fraction * len(y) / len(classes)))
    idx = []
    for c in classes:
        members = (y == c).nonzero().squeeze(1)
        idx.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    return torch.cat(idx).sort().values


def features(encoder: nn.Module, images: torch.Tensor, batch: int = 1000, device="cpu") -> torch.Tensor:
    """Encoder features of uint8 images ``(N, H, W)`` in eval mode: ``(N, D)``."""
    return view_features(encoder, images, None, 0, batch=batch, device=device)[:, 0].contiguous()


@torch.no_grad()
def view_features(encoder: nn.Module, images: torch.Tensor, augment, views: int, seed: int = 0, batch: int = 1000,
                  device="cpu") -> torch.Tensor:
    """Features of each uint8 image ``(N, H, W)`` and of ``views`` random views of it, ``augment(x, g)`` on
    floats: ``(N, 1 + views, D)``, view 0 the image itself; in eval mode, the encoder's own mode restored after."""
    was_training = encoder.training
    encoder.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(images), batch):
        x = to_float(images[i: i + batch]).to(device)
        out.append(torch.stack([encoder(x if k == 0 else augment(x, g)).float().cpu() for k in range(1 + views)], 1))
    encoder.train(was_training)
    return torch.cat(out)


def fit_logreg(a: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float, max_iter: int) -> nn.Linear:
    """Multinomial logistic regression on features ``a``: minimise the mean cross-entropy plus
    ``weight_decay * ||W||^2`` with L-BFGS (strong-Wolfe line search) for at most ``max_iter`` iterations."""
    lin = nn.Linear(a.shape[1], n_classes)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(a), y) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lin


def cv_folds(y: torch.Tensor, folds: int, seed: int = 0) -> list[torch.Tensor]:
    """Class-stratified fold index of every example (``folds`` groups; each class dealt round-robin)."""
    g = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(y), dtype=torch.long)
    for c in y.unique():
        members = (y == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=g)]
        fold[members] = torch.arange(len(members)) % folds
    return [(fold == k).nonzero().squeeze(1) for k in range(folds)]


WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def linear_probe(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
                 weight_decay: float | None = None, max_iter: int = 300, folds: int = 5) -> float:
    """Test accuracy of multinomial logistic regression on frozen features (L-BFGS, L2 penalty).

    ``f_train`` is ``(N, D)``, or ``(N, V, D)``: several views of each labelled image, view 0 the image itself
    (:func:`view_features`), as the SimCLR paper's linear evaluation trains on random crops and flips; the
    classifier then trains on every view of every image.
    ``weight_decay=None`` picks the penalty from :data:`WEIGHT_DECAYS` by stratified ``folds``-fold
    cross-validation on the *labelled training images only* (one held-out fold when there are more
    than 20000 of them), then refits on all of them: 600 labels want a stronger penalty than 60000.
    Folds split images, never views of one image, and score a held-out image by view 0, as the test images are
    scored. With fewer than ``folds`` labels in some class it uses 1e-4."""
    views = f_train if f_train.dim() == 3 else f_train[:, None]  # (N, V, D)
    flat = views.reshape(-1, views.shape[-1])
    mu, sd = flat.mean(0), flat.std(0) + 1e-6
    a, b = (views - mu) / sd, (f_test - mu) / sd
    n_classes = int(max(y_train.max(), y_test.max())) + 1

    def fit(rows: torch.Tensor, wd: float) -> nn.Linear:  # every view of the images ``rows`` (a bool mask or all)
        return fit_logreg(a[rows].flatten(0, 1), y_train[rows].repeat_interleave(a.shape[1]), n_classes, wd, max_iter)

    if weight_decay is None and int(torch.bincount(y_train)[y_train.unique()].min()) < folds:
        weight_decay = 1e-4  # too few labels per class to cross-validate (e.g. one shot): a light penalty
    if weight_decay is None:
        parts = cv_folds(y_train, folds)
        parts = parts[:1] if len(a) > 20000 else parts

        def cv_accuracy(wd: float) -> float:
            correct = 0
            for held in parts:
                keep = torch.ones(len(a), dtype=torch.bool)
                keep[held] = False
                lin = fit(keep, wd)
                with torch.no_grad():
                    correct += (lin(a[held, 0]).argmax(-1) == y_train[held]).sum().item()
            return correct

        weight_decay = max(WEIGHT_DECAYS, key=cv_accuracy)  # ties: the first (weakest) penalty
    lin = fit(torch.ones(len(a), dtype=torch.bool), weight_decay)
    with torch.no_grad():
        return (lin(b).argmax(-1) == y_test).float().mean().item()


@torch.no_grad()
def knn_accuracy(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor, y_test: torch.Tensor,
                 k: int = 20, temperature: float = 0.1, chunk: int = 1000) -> float:
    """Weighted k-NN with cosine similarity (votes ``exp(sim / T)``), as in Wu et al. 2018."""
    a, b = F.normalize(f_train, dim=-1), F.normalize(f_test, dim=-1)
    n_classes = int(y_train.max()) + 1
    correct = 0
    for i in range(0, len(b), chunk):
        sim = b[i: i + chunk] @ a.T  # (C, N)
        top, idx = sim.topk(k, dim=-1)
        votes = torch.zeros(len(top), n_classes).scatter_add_(1, y_train[idx], (top / temperature).exp())
        correct += (votes.argmax(-1) == y_test[i: i + chunk]).sum().item()
    return correct / len(b)


def train_classifier(encoder: nn.Module, feat_dim: int, x: torch.Tensor, y: torch.Tensor, steps: int, batch: int,
                     lr: float, augment=None, seed: int = 0, device="cpu") -> nn.Module:
    """Train ``encoder`` + a linear layer end to end (fine-tuning, or from scratch for a fresh encoder)
    on uint8 images ``x`` with labels ``y``; returns the classifier (a copy, the encoder is untouched)."""
    n_classes = int(y.max()) + 1
    model = nn.Sequential(copy.deepcopy(encoder), nn.Linear(feat_dim, n_classes)).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=g)
        xb = to_float(x[idx].to(device))  # augmented on the model's device
        if augment is not None:
            xb = augment(xb, g)
        loss = F.cross_entropy(model(xb), y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def classifier_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000, device="cpu") -> float:
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(to_float(x[i: i + batch]).to(device)).argmax(-1).cpu() == y[i: i + batch]).sum().item()
    return correct / len(x)
