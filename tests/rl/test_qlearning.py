"""Tabular Q-learning vs value iteration on FrozenLake (tier 1), and learning the slippery lake (tier 2)."""
import numpy as np

from dlnotes.rl.qlearning import evaluate_table, q_learning, success_within, tables, value_iteration


def test_value_iteration_solves_the_bellman_equation():
    P, R, term = tables("FrozenLake-v1", is_slippery=True)
    Q = value_iteration(P, R, term, 0.95)
    V = np.where(term, 0.0, Q.max(1))
    np.testing.assert_allclose(Q, (P * (R + 0.95 * V[None, None, :])).sum(-1), atol=1e-8)
    assert np.allclose(Q[term], 0.0)  # nothing more to earn once the episode is over


def test_value_iteration_on_deterministic_lake_is_gamma_to_the_distance():
    P, R, term = tables("FrozenLake-v1", is_slippery=False)
    Q = value_iteration(P, R, term, 0.9)
    assert np.isclose(Q[0].max(), 0.9 ** 5)  # the shortest safe path is 6 moves; the last one pays 1
    assert np.isclose(Q[14, 2], 1.0)  # stepping right from next to the goal


def test_q_learning_converges_to_value_iteration_on_deterministic_lake():
    P, R, term = tables("FrozenLake-v1", is_slippery=False)
    Q_star = value_iteration(P, R, term, 0.9)
    Q = q_learning(P, R, term, episodes=3000, gamma=0.9, lr=0.5, eps_start=1.0, eps_end=1.0, eps_decay_frac=1.0,
                   max_steps=100, seed=0)
    reachable = ~term
    np.testing.assert_allclose(Q[reachable], Q_star[reachable], atol=1e-4)


def test_exact_success_probability_matches_simulation():
    P, R, term = tables("FrozenLake-v1", is_slippery=True)
    policy = value_iteration(P, R, term, 0.99).argmax(1)
    exact = success_within(P, R, term, policy, 100)
    assert 0.73 < exact < 0.75
    sim = evaluate_table(policy, 2000, seed=0)
    assert abs(sim - exact) < 3 * np.sqrt(exact * (1 - exact) / 2000) + 1e-3
    # a step limit of 6 cuts success to the lucky straight runs
    assert success_within(P, R, term, policy, 6) < 0.2


def test_q_learning_learns_slippery_4x4():
    """Tier 2: the greedy policy after 6000 episodes is within a few points of the optimum 0.74."""
    P, R, term = tables("FrozenLake-v1", is_slippery=True)
    Q = q_learning(P, R, term, episodes=6000, gamma=0.99, lr=0.1, eps_start=1.0, eps_end=0.05, eps_decay_frac=0.8,
                   max_steps=100, seed=0, lr_end=0.01)
    assert success_within(P, R, term, Q.argmax(1), 100) >= 0.70
