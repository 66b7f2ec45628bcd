"""Pretext tasks and transfer helpers: tier 1 against direct constructions."""

import torch

from dlnotes.selfsup.pretext import PretextNet, jigsaw_batch, permutation_set, rotation_batch, tiles_of
from dlnotes.selfsup.probe import cv_folds, knn_accuracy, linear_probe
from dlnotes.selfsup.transfer import k_per_class


def test_rotation_batch_labels_each_quarter_turn():
    x = torch.rand(3, 1, 6, 6)
    v, y = rotation_batch(x)
    assert v.shape == (12, 1, 6, 6) and y.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert torch.equal(v[4], torch.rot90(x[1], 1, dims=(1, 2)))
    assert PretextNet("rotation", width=8)(v).shape == (12, 4)


def test_tiles_and_jigsaw_permutation():
    x = torch.arange(2 * 9 * 9).float().view(2, 1, 9, 9)
    t = tiles_of(x)
    assert torch.equal(t[1, 5], x[1, :, 3:6, 6:9])  # row 1, column 2
    perms = permutation_set(10)
    s, label = jigsaw_batch(x, perms, torch.Generator().manual_seed(0))
    for b in range(2):
        for i in range(9):
            assert torch.equal(s[b, i], t[b, perms[label[b], i]])
    assert PretextNet("jigsaw", width=8, n_perms=10)(s).shape == (2, 10)


def test_permutation_set_is_distinct_and_spread_out():
    p = permutation_set(24, tiles=4)
    assert len({tuple(r.tolist()) for r in p}) == 24  # all 4! permutations
    p = permutation_set(30, tiles=9)
    d = (p[:, None] != p[None]).sum(-1) + 99 * torch.eye(30, dtype=torch.long)
    assert d.min() >= 6  # greedy max-min Hamming distance keeps the classes apart
    # greedy beats random choice of the same number of permutations
    rnd = torch.stack([torch.randperm(9, generator=torch.Generator().manual_seed(i)) for i in range(30)])
    dr = (rnd[:, None] != rnd[None]).sum(-1) + 99 * torch.eye(30, dtype=torch.long)
    assert d.min() > dr.min()


def test_linear_probe_and_knn_on_separable_features():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 16, generator=g) * 4
    y = torch.arange(5).repeat(40)
    f = centers[y] + torch.randn(200, 16, generator=g)
    assert linear_probe(f[:100], y[:100], f[100:], y[100:]) > 0.95
    assert knn_accuracy(f[:100], y[:100], f[100:], y[100:], k=5) > 0.95
    assert linear_probe(torch.randn(100, 16), y[:100], torch.randn(100, 16), y[100:]) < 0.45


def test_k_per_class():
    y = torch.arange(4).repeat(10)
    idx = k_per_class(y, 3)
    assert len(idx) == 12 and torch.bincount(y[idx]).eq(3).all()


def test_cv_folds_partition_and_stratify():
    y = torch.arange(4).repeat_interleave(torch.tensor([10, 15, 5, 20]))
    parts = cv_folds(y, 5)
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(len(y)))  # each example in one fold
    for held in parts:  # every class dealt evenly over the folds
        assert torch.equal(torch.bincount(y[held], minlength=4), torch.tensor([2, 3, 1, 4]))



def test_linear_probe_with_one_label_per_class_skips_cross_validation():
    # one shot: stratified 5-fold CV is impossible; the probe must still fit (L-BFGS failed on empty folds)
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=g) * 4
    y, yt = torch.arange(4), torch.arange(4).repeat(25)
    f, ft = centers[y] + torch.randn(4, 8, generator=g), centers[yt] + torch.randn(100, 8, generator=g)
    acc = linear_probe(f, y, ft, yt)
    assert acc > 0.8
