"""Tile coding and the linear-Q update (tier 1)."""
import numpy as np

from dlnotes.rl.linear_q import LinearQ, TileCoder


def test_tile_coder_has_one_active_tile_per_tiling():
    tc = TileCoder([-1.2, -0.07], [0.6, 0.07], n_tilings=8, tiles=8)
    rng = np.random.default_rng(0)
    s = rng.uniform([-1.2, -0.07], [0.6, 0.07], size=(500, 2))
    idx = tc.active(s)  # (500, 8)
    assert idx.shape == (500, 8) and idx.min() >= 0 and idx.max() < tc.size
    assert ((idx // tc.side ** 2) == np.arange(8)).all()  # the k-th index lies in tiling k's block
    near = tc.active(s + [1e-4, 0.0])
    left = s[s[:, 0] < -0.4]
    far = tc.active(left + [0.9, 0.0])  # 4 tiles to the right, still inside the box
    assert (near == idx).mean() > 0.95 and (far == tc.active(left)).mean() == 0.0


def test_linear_q_update_is_the_bellman_gradient_step():
    tc = TileCoder([0.0, 0.0], [1.0, 1.0], n_tilings=4, tiles=4)
    q = LinearQ(tc, 3)
    s = np.array([0.3, 0.6])
    delta = q.update(s, 1, target=2.0, eta=1.0 / 4)  # eta = 1/n: one step lands exactly on the target
    assert delta == 2.0 and np.isclose(q.values(s)[1], 2.0)
    assert np.allclose(q.values(s)[[0, 2]], 0.0)  # other actions have their own weights
    q.update(s, 1, target=0.0, eta=0.5 / 4)
    assert np.isclose(q.values(s)[1], 1.0)  # half way back
    assert q.values(np.stack([s, s]))[:, 1].tolist() == [1.0, 1.0]
