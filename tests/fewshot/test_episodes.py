"""Tier 1: the Omniglot protocol and the episode sampler; the 95% CI."""
import math

import pytest
import torch

from dlnotes.eval.fewshot import mean_ci95
from dlnotes.fewshot.episodes import (EpisodeSampler, embed_all, episode_images, evaluate_embeddings,
                                      omniglot_splits, query_labels, with_rotations)
from tests.conftest import needs_data


def test_episode_never_leaks_queries_into_supports():
    s = EpisodeSampler(n_classes=30, n_drawings=20, n_way=20, k_shot=5, n_query=15, seed=3)
    for step in range(200):
        classes, sup, qry = s.episode(step)
        assert classes.unique().numel() == 20 and classes.max() < 30
        assert sup.shape == (20, 5) and qry.shape == (20, 15)
        both = torch.cat([sup, qry], 1)
        # per class: the 20 drawings used are distinct, so no query image is a support image
        assert all(row.unique().numel() == 20 for row in both)


def test_episodes_are_a_function_of_seed_and_step():
    a = EpisodeSampler(100, 20, 5, 1, 15, seed=7)
    b = EpisodeSampler(100, 20, 5, 1, 15, seed=7)
    for step in (0, 5, 99):
        assert all(torch.equal(x, y) for x, y in zip(a.episode(step), b.episode(step)))
    assert not torch.equal(a.episode(0)[0], a.episode(1)[0])
    assert not torch.equal(a.episode(0)[0], EpisodeSampler(100, 20, 5, 1, 15, seed=8).episode(0)[0])


def test_sampler_rejects_impossible_episodes():
    with pytest.raises(ValueError):
        EpisodeSampler(4, 20, 5, 1, 1)
    with pytest.raises(ValueError):
        EpisodeSampler(10, 20, 5, 10, 11)


def test_episode_images_and_labels_match_the_sampled_classes():
    imgs = torch.arange(6).view(6, 1, 1, 1).expand(6, 20, 4, 4).to(torch.uint8) * 40  # class c has value 40c
    data = with_rotations(imgs, torch.arange(6), rotations=(0,))
    s = EpisodeSampler(6, 20, 3, 2, 4, seed=0)
    classes, sup, qry = s.episode(0)
    xs, xq = episode_images(data, classes, sup, qry)
    assert xs.shape == (3, 2, 1, 4, 4) and xq.shape == (3, 4, 1, 4, 4)
    for n in range(3):
        assert torch.allclose(xs[n], torch.full_like(xs[n], 40 * classes[n].item() / 255))
    y = query_labels(3, 4)
    assert torch.allclose(xq.flatten(0, 1)[:, 0, 0, 0] * 255 / 40, classes[y].float())


def test_rotations_are_new_classes_of_the_same_character():
    imgs = torch.zeros(2, 20, 5, 5, dtype=torch.uint8)
    imgs[:, :, 0, 4] = 255  # a dot in the top-right corner
    data = with_rotations(imgs, torch.tensor([10, 11]))
    assert data.n_classes == 8
    assert data.chars.tolist() == [10, 11] * 4 and data.rotations.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert data.images[2, 0, 0, 0] == 255  # rot90 moves the top-right corner to the top-left


def test_mean_ci95_matches_the_normal_interval():
    a = torch.tensor([1.0, 0.8, 0.6, 1.0, 0.8] * 200)
    m, h = mean_ci95(a)
    assert m == pytest.approx(0.84)
    assert h == pytest.approx(1.959964 * a.double().std().item() / math.sqrt(1000), rel=1e-6)


def test_evaluate_embeddings_is_perfect_on_separable_embeddings_and_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(30, 1, 8, generator=g) * 10
    z = centers + 0.01 * torch.randn(30, 20, 8, generator=g)

    def scores(zs, zq):
        return -torch.cdist(zq, zs.mean(1))

    assert evaluate_embeddings(scores, z, 5, 1, episodes=50)["accuracy"] == 1.0
    noise = torch.randn(30, 20, 8, generator=g)
    r = evaluate_embeddings(scores, noise, 5, 1, episodes=300)
    assert abs(r["accuracy"] - 0.2) < 0.03 and r["ci95"] > 0


def test_embed_all_keeps_class_and_drawing_axes():
    data = with_rotations(torch.randint(0, 255, (3, 20, 6, 6), dtype=torch.uint8), torch.arange(3), (0, 1))
    z = embed_all(lambda x: x.flatten(1)[:, :2], data, batch=7)
    assert z.shape == (6, 20, 2)
    assert torch.allclose(z[4, 7], data.images[4, 7].flatten()[:2].float() / 255)


@needs_data("omniglot")
def test_omniglot_split_is_vinyals_and_character_disjoint():
    train, test, names = omniglot_splits()
    assert train.images.shape == (4800, 20, 28, 28) and test.images.shape == (1692, 20, 28, 28)
    assert set(train.chars.tolist()).isdisjoint(test.chars.tolist())
    assert len(set(train.chars.tolist())) == 1200 and len(set(test.chars.tolist())) == 423
    assert names[1200] == ("Gurmukhi", "character42")  # first test character of the Vinyals split
    # the rotated copy of a training character is a training class, never a test class
    c = 17
    assert torch.equal(train.images[1200 + c], torch.rot90(train.images[c], 1, dims=(1, 2)))
