"""Random search, ARS and evolution strategies: estimator math (tier 1) and CartPole learning (tier 2)."""
import numpy as np

from dlnotes.rl.evolution import MLPPolicy, centered_ranks, es_gradient
from dlnotes.rl.random_search import linear_act


def test_centered_ranks():
    x = np.array([[3.0, -1.0], [10.0, 2.0]])
    np.testing.assert_allclose(centered_ranks(x), [[1 / 6, -0.5], [0.5, -1 / 6]])
    assert np.allclose(centered_ranks(x * 100 + 7), centered_ranks(x))  # invariant to the reward's scale


def test_antithetic_es_gradient_of_a_quadratic_is_unbiased():
    """For F(theta) = -||theta - c||^2 the Gaussian-smoothed gradient is exactly -2 (theta - c)."""
    rng = np.random.default_rng(0)
    theta, c, sigma = rng.normal(size=5), rng.normal(size=5), 0.1
    eps = rng.standard_normal((40_000, 5))
    F = lambda th: -((th - c) ** 2).sum(-1)  # noqa: E731
    returns = np.stack([F(theta + sigma * eps), F(theta - sigma * eps)], 1)
    g = es_gradient(returns, eps, sigma, rank_shaping=False)
    np.testing.assert_allclose(g, -2 * (theta - c), atol=0.1)  # about 5 standard errors
    # rank shaping changes the scale, not the direction (for this monotone problem)
    g_rank = es_gradient(returns, eps, sigma, rank_shaping=True)
    assert np.dot(g_rank, g) / np.linalg.norm(g_rank) / np.linalg.norm(g) > 0.95


def test_batched_policies_match_one_at_a_time():
    rng = np.random.default_rng(1)
    pol = MLPPolicy(4, 8, 2, discrete=True)
    thetas = rng.normal(size=(3, pol.dim))
    obs = rng.normal(size=(3, 5, 4))
    batched = pol.act(thetas)(obs)
    for p in range(3):
        np.testing.assert_array_equal(batched[p], pol.act(thetas[p:p + 1])(obs[p:p + 1])[0])
    M = rng.normal(size=(3, 2, 4))
    np.testing.assert_array_equal(linear_act(M, True)(obs), np.einsum("pad,ped->pea", M, obs).argmax(-1))


def test_es_two_workers_equal_one_and_seeded_runs_repeat(run_recipe):
    over = ["generations=4", "eval_every=100", "final_episodes=5", "stop_return=0", "pairs=4"]
    _, a = run_recipe("cartpole-es", preset="full", overrides=over + ["workers=2"])
    _, b = run_recipe("cartpole-es", preset="full", overrides=over + ["workers=1"])
    _, c = run_recipe("cartpole-es", preset="full", overrides=over + ["workers=1"], seed=1)
    assert a["eval_return"] == b["eval_return"] and a["env_steps"] == b["env_steps"]
    assert c["env_steps"] != a["env_steps"]


def test_ars_and_random_search_learn_cartpole(run_recipe):
    """Tier 2: both reach a greedy return of 400+ (random linear policies score ~10-60) within 12 updates."""
    for name in ("cartpole-ars", "cartpole-random-search"):
        _, res = run_recipe(name, preset="full", overrides=["iterations=12", "eval_every=2", "stop_return=400",
                                                            "final_episodes=10"])
        assert res["steps_to_target"] > 0, (name, res)
