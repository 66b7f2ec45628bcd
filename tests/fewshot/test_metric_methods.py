"""Tier 1 for Matching, Relation, Siamese and Triplet networks against written-out references."""
import torch
import torch.nn.functional as F

from dlnotes.fewshot.matching import MatchingNet
from dlnotes.fewshot.relation import RelationNet
from dlnotes.fewshot.siamese import SiameseNet, sample_pairs
from dlnotes.fewshot.triplet import pairwise_sq_dist, semi_hard_triplet_loss


def test_matching_probability_is_attention_summed_over_each_class():
    torch.manual_seed(0)
    m = MatchingNet(cos_scale=3.0)
    zs, zq = torch.randn(3, 2, 5), torch.randn(4, 5)
    logp = m.scores(zs, zq)
    for i in range(4):
        sims = torch.tensor([F.cosine_similarity(zq[i], zs[n, k], dim=0) * 3.0 for n in range(3) for k in range(2)])
        a = torch.softmax(sims, 0)  # attention over the 6 supports
        p = torch.stack([a[2 * n] + a[2 * n + 1] for n in range(3)])
        assert torch.allclose(logp[i].exp(), p, atol=1e-5)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(4), atol=1e-5)


def test_matching_fce_keeps_shapes_and_is_a_distribution():
    torch.manual_seed(0)
    m = MatchingNet(fce=True, fce_steps=2)
    logp = m.scores(torch.randn(5, 1, 64), torch.randn(7, 64))
    assert logp.shape == (7, 5) and torch.allclose(logp.exp().sum(-1), torch.ones(7), atol=1e-5)


def test_relation_scores_every_query_class_pair():
    torch.manual_seed(0)
    m = RelationNet().eval()
    z = m.embed(torch.rand(9, 1, 28, 28))
    assert z.shape == (9, 64, 7, 7)
    zs, zq = z[:6].view(3, 2, 64, 7, 7), z[6:]
    s = m.scores(zs, zq)
    assert s.shape == (3, 3) and ((s > 0) & (s < 1)).all()
    for i in range(3):
        for n in range(3):
            pair = torch.cat([zs[n].mean(0), zq[i]]).unsqueeze(0)
            assert torch.allclose(s[i, n], m.relation(pair)[0], atol=1e-5)
    y = torch.tensor([0, 2, 1])
    assert torch.allclose(m.loss(s, y), ((s - F.one_hot(y, 3).float()) ** 2).mean())


def test_relation_split_first_conv_equals_concatenated_pairs_in_training_mode():
    """score_all (first conv split over the two halves) = the module on built concatenations,
    batch-norm statistics over all pairs and gradients included."""
    torch.manual_seed(1)
    m = RelationNet(width=8, hidden=4)
    classes, queries = torch.randn(4, 8, 7, 7, requires_grad=True), torch.randn(6, 8, 7, 7, requires_grad=True)
    fast = m.relation.score_all(classes, queries)
    pairs = torch.cat([classes.unsqueeze(0).expand(6, -1, -1, -1, -1),
                       queries.unsqueeze(1).expand(-1, 4, -1, -1, -1)], dim=2)  # (M, N, 2C, h, w)
    slow = m.relation(pairs.flatten(0, 1)).view(6, 4)
    assert torch.allclose(fast, slow, atol=1e-5)
    w = torch.randn(6, 4)
    g_fast = torch.autograd.grad((fast * w).sum(), [classes, queries, *m.relation.parameters()])
    g_slow = torch.autograd.grad((slow * w).sum(), [classes, queries, *m.relation.parameters()])
    for a, b in zip(g_fast, g_slow):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_siamese_pairs_and_best_match_scores():
    g = torch.Generator().manual_seed(0)
    imgs = torch.zeros(10, 20, 2, 2)
    (c1, d1), (c2, d2), same = sample_pairs(imgs, 64, g)
    assert same[:32].eq(1).all() and same[32:].eq(0).all()
    assert (c1[:32] == c2[:32]).all() and (d1[:32] != d2[:32]).all()  # same class, another drawing
    assert (c1[32:] != c2[32:]).all()
    torch.manual_seed(0)
    m = SiameseNet(feature_dim=16)
    zs, zq = torch.rand(4, 3, 16), torch.rand(5, 16)
    s = m.scores(zs, zq)
    for i in range(5):
        for n in range(4):
            ref = max((m.match((zq[i] - zs[n, k]).abs())).item() for k in range(3))
            assert abs(s[i, n].item() - ref) < 1e-5


def test_semi_hard_mining_matches_a_loop():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(12, 4), dim=-1)
    labels = torch.arange(4).repeat_interleave(3)
    loss, chosen = semi_hard_triplet_loss(z, labels, margin=0.2)
    d = pairwise_sq_dist(z)
    total, count = 0.0, 0
    for a in range(12):
        for p in range(12):
            if a == p or labels[a] != labels[p]:
                assert chosen[a, p] == -1
                continue
            negs = [n for n in range(12) if labels[n] != labels[a]]
            semi = [n for n in negs if d[a, n] > d[a, p]]
            n = min(semi, key=lambda j: d[a, j]) if semi else max(negs, key=lambda j: d[a, j])
            assert chosen[a, p] == n
            total += max(0.0, (d[a, p] - d[a, n] + 0.2).item())
            count += 1
    assert abs(loss.item() - total / count) < 1e-5
