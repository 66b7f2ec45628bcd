"""Pretext tasks for images (Lecture 13, "Contrastive self-supervision"): rotation and jigsaw.

A pretext task makes labels from the images themselves, so a network can learn features without
annotation; the features are then judged by a linear probe on the real labels.

* Rotation prediction (Gidaris et al. 2018): rotate each image by ``r * 90`` degrees,
  ``r in {0, 1, 2, 3}``, and classify ``r``. Recognising "which way is up" needs the object's shape.
* Jigsaw puzzles (Noroozi and Favaro 2016): cut the image into a 3x3 grid of tiles, shuffle them
  with one permutation from a fixed set of ``P`` permutations, encode every tile with the same
  (shared-weight) encoder, concatenate the 9 tile features in their shuffled order, and classify
  which permutation was applied. The permutation set is chosen greedily to maximise the minimum
  Hamming distance between its members so that the classes are distinguishable.

Both use the small ResNet encoder ``g``; after pretraining its global-pooled features on whole
images feed the linear probe (and a k-NN classifier).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sampling import StepSampler
from ..engine import Run, recipe
from ..nn.backbones import SmallResNet, to_float
from .probe import features, knn_accuracy, label_subset, linear_probe, load_images


def rotation_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of ``x (B, C, H, W)``: ``(4B, C, H, W)`` and labels ``r`` in 0..3."""
    views = torch.cat([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])
    return views, torch.arange(4).repeat_interleave(x.shape[0])


def permutation_set(n: int, tiles: int = 9, seed: int = 0) -> torch.Tensor:
    """``n`` permutations of ``tiles`` items chosen greedily for maximal minimum Hamming distance
    (from a random pool when ``tiles!`` is large)."""
    g = torch.Generator().manual_seed(seed)
    if tiles <= 6:
        pool = torch.tensor(list(itertools.permutations(range(tiles))))
    else:
        pool = torch.stack([torch.randperm(tiles, generator=g) for _ in range(2000)])
        pool = torch.cat([torch.arange(tiles)[None], pool]).unique(dim=0)
    chosen = [0]
    dmin = (pool != pool[0]).sum(1)  # Hamming distance of every candidate to the chosen set
    for _ in range(n - 1):
        nxt = int(dmin.argmax())
        chosen.append(nxt)
        dmin = torch.minimum(dmin, (pool != pool[nxt]).sum(1))
    return pool[chosen]


def tiles_of(x: torch.Tensor, grid: int = 3) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, grid*grid, C, h, w)`` row-major tiles of the largest multiple of ``grid``."""
    b, c, hh, ww = x.shape
    h, w = hh // grid, ww // grid
    x = x[:, :, : h * grid, : w * grid]
    t = x.reshape(b, c, grid, h, grid, w).permute(0, 2, 4, 1, 3, 5)  # (B, g, g, C, h, w)
    return t.reshape(b, grid * grid, c, h, w)


def jigsaw_batch(x: torch.Tensor, perms: torch.Tensor, g: torch.Generator, grid: int = 3):
    """Shuffled tiles ``(B, 9, C, h, w)`` (tile ``i`` of the input is ``tiles[perm[i]]``) and the
    index of the permutation used."""
    t = tiles_of(x, grid)
    label = torch.randint(len(perms), (x.shape[0],), generator=g)
    order = perms[label]  # (B, 9)
    shuffled = t[torch.arange(x.shape[0])[:, None], order]
    return shuffled, label


class PretextNet(nn.Module):
    def __init__(self, task: str, width: int = 32, n_perms: int = 24, grid: int = 3):
        super().__init__()
        self.task, self.grid = task, grid
        self.encoder = SmallResNet(width=width)  # g
        d = self.encoder.out_dim
        if task == "rotation":
            self.head = nn.Linear(d, 4)
        elif task == "jigsaw":
            self.head = nn.Sequential(nn.Linear(grid * grid * d, 256), nn.ReLU(inplace=True), nn.Linear(256, n_perms))
        else:
            raise ValueError(f"task must be rotation or jigsaw, not {task!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.task == "rotation":
            return self.head(self.encoder(x))  # (B, 4)
        b, n = x.shape[:2]
        f = self.encoder(x.flatten(0, 1)).view(b, n * self.encoder.out_dim)  # shared tile encoder, concatenated
        return self.head(f)  # (B, P)


@dataclass
class PretextConfig:
    task: str = "rotation"  # rotation | jigsaw
    dataset: str = "fashion_mnist"  # fashion_mnist | mnist | digits (built-in 8x8)
    width: int = 32  # SmallResNet base width
    n_perms: int = 24  # jigsaw: size of the permutation set (classes)
    batch: int = 128  # images per step
    epochs: float = 5.0  # passes over the training images
    lr: float = 1e-3  # Adam learning rate (cosine decay)
    label_fractions: str = "0.01,0.1,1.0"  # label budgets of the linear probe
    log_every: int = 20  # steps between logged losses
    ckpt_every: int = 500  # steps between checkpoints


def run_pretext(cfg: PretextConfig, run: Run) -> dict[str, float]:
    x_tr, y_tr, x_te, y_te = load_images(cfg.dataset)
    model = PretextNet(cfg.task, cfg.width, cfg.n_perms).to(run.device)
    perms = permutation_set(cfg.n_perms)
    steps_per_epoch = len(x_tr) // cfg.batch
    total = max(1, int(cfg.epochs * steps_per_epoch))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    seed = torch.initial_seed()
    sampler = StepSampler(len(x_tr), cfg.batch, seed=seed)
    run.watch(model=model, optimizer=opt, scheduler=sched)
    start = run.restore()
    for step in run.steps(total, unit="img", items_per_step=cfg.batch):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x = to_float(x_tr[sampler.indices(step)])
        if cfg.task == "rotation":
            inp, y = rotation_batch(x)
        else:
            inp, y = jigsaw_batch(x, perms, g)
        with run.autocast():
            logits = model(inp.to(run.device)).float()
            loss = F.cross_entropy(logits, y.to(run.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == total - 1:
            run.log(step, loss=loss.item(), pretext_acc=(logits.argmax(-1).cpu() == y).float().mean().item())
        else:
            run.log_check(step, loss=loss.item())
    run.checkpoint()
    result = {"pretrain_s": run.elapsed, "throughput": cfg.batch * (run.step - start) / max(run.elapsed, 1e-9)}
    f_tr, f_te = features(model.encoder, x_tr, device=run.device), features(model.encoder, x_te, device=run.device)
    result["knn_accuracy"] = knn_accuracy(f_tr, y_tr, f_te, y_te)
    for frac in (float(f) for f in cfg.label_fractions.split(",")):
        idx = label_subset(y_tr, frac)
        result[f"probe_acc_{round(frac * 100):g}pct"] = linear_probe(f_tr[idx], y_tr[idx], f_te, y_te)
    fresh = SmallResNet(width=cfg.width).to(run.device)  # reference: the same probe on a random (untrained) encoder
    r_tr, r_te = features(fresh, x_tr, device=run.device), features(fresh, x_te, device=run.device)
    result["random_encoder_probe_acc"] = linear_probe(r_tr, y_tr, r_te, y_te)
    result["accuracy"] = result[f"probe_acc_{round(float(cfg.label_fractions.split(',')[-1]) * 100):g}pct"]
    run.print(" ".join(f"{k}={v:.4f}" for k, v in result.items()))
    return result


_QUICK = {"dataset": "digits", "width": 16, "epochs": 3.0, "label_fractions": "0.1,1.0", "log_every": 5,
          "ckpt_every": 0}

for _task in ("rotation", "jigsaw"):
    def _make(task=_task):
        def pretext(cfg: PretextConfig, run: Run) -> dict[str, float]:
            return run_pretext(cfg, run)
        pretext.__doc__ = f"{task.capitalize()} pretext task on Fashion-MNIST; linear probe of the learned features."
        return recipe(f"pretext-{task}", lecture=13, section="Contrastive self-supervision (pretext tasks)",
                      config=PretextConfig, datasets=("fashion_mnist",),
                      presets={"full": {"task": task}, "quick": _QUICK})(pretext)
    _make()
