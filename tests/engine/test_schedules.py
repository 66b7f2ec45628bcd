"""Tier 1: the shared learning-rate schedule."""
import math

import pytest
import torch

from dlnotes.engine.schedules import set_lr, warmup_cosine


def test_warmup_then_cosine_endpoints_and_midpoint():
    assert warmup_cosine(0, 1000, 1e-3, 1e-4, warmup=100) == pytest.approx(1e-5)
    assert warmup_cosine(99, 1000, 1e-3, 1e-4, warmup=100) == pytest.approx(1e-3)
    assert warmup_cosine(100, 1000, 1e-3, 1e-4, warmup=100) == pytest.approx(1e-3)
    assert warmup_cosine(550, 1000, 1e-3, 1e-4, warmup=100) == pytest.approx(5.5e-4)
    assert warmup_cosine(1000, 1000, 1e-3, 1e-4, warmup=100) == pytest.approx(1e-4)
    assert warmup_cosine(5000, 1000, 1e-3, 1e-4, warmup=100) == pytest.approx(1e-4)  # clamped past the end


def test_no_warmup_decays_monotonically_to_zero():
    lrs = [warmup_cosine(t, 50, 2e-3) for t in range(51)]
    assert lrs[0] == pytest.approx(2e-3)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[25] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_set_lr_sets_every_group():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    set_lr(opt, 0.25)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
