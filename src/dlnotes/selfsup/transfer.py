"""Transfer learning with few labels (Lecture 13, "Transfer learning").

A base network is pretrained on a bigger labelled source (the 1200 Omniglot training characters
with rotations, 4800 classes, or Fashion-MNIST) and reused on a new task with only ``k`` labelled
examples per class (MNIST digits), three ways:

* *linear probe*: freeze the pretrained features, fit a linear classifier on top;
* *fine-tuning*: start from the pretrained weights and train everything (a new linear head);
* *from scratch*: the same network from a random initialisation, same labels and steps.

The accuracy of each against ``k`` shows where pretrained features pay off (small ``k``) and
where the target data suffices on its own (large ``k``); the curve is saved as ``transfer.png``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sampling import StepSampler
from ..engine import Run, recipe
from ..nn.backbones import Conv4, to_float
from .augment import random_affine
from .probe import classifier_accuracy, features, load_images, train_classifier


def pretraining_data(source: str):
    """``(images (N, H, W) uint8, labels)`` of the source task."""
    if source == "omniglot":
        from ..fewshot.episodes import omniglot_splits

        train, _, _ = omniglot_splits()
        c, d = train.images.shape[:2]
        return train.images.reshape(c * d, *train.images.shape[2:]), torch.arange(c).repeat_interleave(d)
    x, y, _, _ = load_images(source, key="source")
    return x, y


def k_per_class(y: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([(y == c).nonzero().squeeze(1)[torch.randperm(int((y == c).sum()), generator=g)[:k]]
                      for c in y.unique()])


@dataclass
class TransferConfig:
    source: str = "omniglot"  # pretraining data: omniglot (4800 classes) | fashion_mnist | mnist | digits
    target: str = "mnist"  # few-label task: mnist | fashion_mnist | digits
    width: int = 64  # Conv4 filters (features: 64-d after four poolings)
    pretrain_steps: int = 3000  # supervised pretraining steps on the source
    batch: int = 256  # pretraining batch
    lr: float = 1e-3  # pretraining Adam learning rate
    ks: str = "1,5,10,50,100"  # labelled examples per class on the target
    finetune_steps: int = 300  # steps of fine-tuning and of training from scratch, per k
    finetune_batch: int = 64  # batch of fine-tuning / scratch training
    finetune_lr: float = 1e-3  # Adam learning rate of fine-tuning / scratch training
    eval_limit: int = 0  # evaluate on the first N target test images (0: all)
    log_every: int = 50  # steps between logged losses
    ckpt_every: int = 1000  # steps between checkpoints


@recipe("transfer-few-labels", lecture=13, section="Transfer learning", config=TransferConfig,
        datasets=("omniglot", "mnist"),
        presets={"quick": {"source": "mnist", "target": "digits", "width": 32, "pretrain_steps": 40,
                           "batch": 128, "ks": "1,10", "finetune_steps": 30, "log_every": 10, "ckpt_every": 0}})
def transfer_few_labels(cfg: TransferConfig, run: Run) -> dict[str, float]:
    """Pretrain on Omniglot, then linear probe vs fine-tune vs scratch on MNIST with k labels per class."""
    x_src, y_src = pretraining_data(cfg.source)
    encoder = Conv4(width=cfg.width)
    head = nn.Linear(encoder.out_dim, int(y_src.max()) + 1)
    model = nn.Sequential(encoder, head).to(run.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sampler = StepSampler(len(x_src), cfg.batch, seed=torch.initial_seed())
    run.watch(model=model, optimizer=opt)
    run.restore()
    for step in run.steps(cfg.pretrain_steps, unit="img", items_per_step=cfg.batch):
        g = torch.Generator().manual_seed(step)
        idx = sampler.indices(step)
        x = to_float(x_src[idx].to(run.device))  # augmented on the model's device
        x = random_affine(x, g, degrees=5, shear=0.1, scale=(0.9, 1.1), translate=0.05)
        loss = F.cross_entropy(model(x), y_src[idx].to(run.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.log_every == 0:
            run.log(step, loss=loss.item())
        else:
            run.log_check(step, loss=loss.item())
    run.checkpoint()
    x_tr, y_tr, x_te, y_te = load_images(cfg.target, key="target")
    if cfg.eval_limit:
        x_te, y_te = x_te[: cfg.eval_limit], y_te[: cfg.eval_limit]
    if x_tr.shape[-1] != x_src.shape[-1]:  # e.g. 8x8 digits for a 28x28 source: resize
        size = x_src.shape[-1]
        x_tr, x_te = (F.interpolate(v[:, None].float(), size=(size, size), mode="bilinear")[:, 0].round()
                      .clamp(0, 255).to(torch.uint8) for v in (x_tr, x_te))
    from .probe import linear_probe

    f_te = features(encoder, x_te, device=run.device)
    result: dict[str, float] = {"pretrain_s": run.elapsed}
    curves = {"probe": [], "finetune": [], "scratch": []}
    ks = [int(k) for k in cfg.ks.split(",")]
    for k in ks:
        idx = k_per_class(y_tr, k)
        result[f"probe_acc_k{k}"] = linear_probe(features(encoder, x_tr[idx], device=run.device), y_tr[idx], f_te, y_te)
        ft = train_classifier(encoder, encoder.out_dim, x_tr[idx], y_tr[idx], cfg.finetune_steps, cfg.finetune_batch,
                              cfg.finetune_lr, device=run.device)
        result[f"finetune_acc_k{k}"] = classifier_accuracy(ft, x_te, y_te, device=run.device)
        fresh = Conv4(width=cfg.width)
        sc = train_classifier(fresh, fresh.out_dim, x_tr[idx], y_tr[idx], cfg.finetune_steps, cfg.finetune_batch,
                              cfg.finetune_lr, device=run.device)
        result[f"scratch_acc_k{k}"] = classifier_accuracy(sc, x_te, y_te, device=run.device)
        for name in curves:
            curves[name].append(result[f"{name}_acc_k{k}"])
        run.print(f"k={k}: " + " ".join(f"{n}={curves[n][-1]:.4f}" for n in curves))
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, ys in curves.items():
        ax.plot(ks, ys, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labelled examples per class (k)")
    ax.set_ylabel(f"{cfg.target} test accuracy")
    ax.set_title(f"pretrained on {cfg.source}")
    ax.grid(alpha=0.3)
    ax.legend()
    run.save_figure("transfer", fig)
    result["accuracy"] = result[f"finetune_acc_k{ks[0]}"]
    return result
