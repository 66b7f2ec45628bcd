"""Learning-rate schedules shared by the recipes (one implementation, many callers)."""
from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, lr: float, min_lr: float = 0.0, warmup: int = 0) -> float:
    """Learning rate at ``step`` (0-based) of ``total``: linear warm-up over ``warmup`` steps to ``lr``,
    then half a cosine from ``lr`` down to ``min_lr`` at step ``total``::

        lr_t = lr * (t + 1) / warmup                                   for t < warmup
        lr_t = min_lr + (lr - min_lr) * (1 + cos(pi * f)) / 2,   f = (t - warmup) / (total - warmup)
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * frac))


def set_lr(optimizer, lr: float) -> None:
    """Set every parameter group of ``optimizer`` to ``lr``, times the group's ``lr_scale`` where it has one
    (layer-wise rates: :func:`dlnotes.sequence.finetune.layerwise_optimizer`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
