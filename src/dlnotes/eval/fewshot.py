"""Few-shot accuracy as a mean over test episodes with a 95% confidence interval.

With per-episode accuracies ``a_1..a_n`` the reported figure is ``mean(a) +- 1.96 * s / sqrt(n)``
where ``s`` is the sample standard deviation (Bessel-corrected): the normal-approximation interval
for the mean that few-shot papers quote (e.g. "98.8 +- 0.2% over 1000 episodes").
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def mean_ci95(accuracies: Iterable[float] | torch.Tensor) -> tuple[float, float]:
    """Return ``(mean, half_width)`` of the 95% confidence interval of the mean accuracy."""
    a = torch.as_tensor(list(accuracies) if not isinstance(accuracies, torch.Tensor) else accuracies,
                        dtype=torch.float64).flatten()
    n = a.numel()
    if n == 0:
        raise ValueError("no episodes to average")
    if n == 1:
        return float(a[0]), float("nan")
    return float(a.mean()), float(Z95 * a.std(unbiased=True) / math.sqrt(n))


def format_ci(mean: float, half: float, percent: bool = True) -> str:
    s = 100.0 if percent else 1.0
    return f"{mean * s:.2f} +- {half * s:.2f}" + ("%" if percent else "")
