"""Tier 1: MCTS takes a win in one, blocks a loss in one, and batching trees changes nothing."""
from __future__ import annotations

import numpy as np

from dlnotes.rl.games import Connect4, TicTacToe
from dlnotes.rl.mcts import MCTSConfig, MCTSPlayer, RolloutEvaluator, search, visit_policy


def ttt(*moves):
    return TicTacToe().replay(moves)


def c4(*moves):
    return Connect4().replay(moves)


def rollout_player(game, sims, seed=0):
    return MCTSPlayer(RolloutEvaluator(game.num_actions, seed=seed), MCTSConfig(simulations=sims), seed=seed)


def test_takes_a_win_in_one_tictactoe():
    # X: 0 1, O: 3 4 -> X to move wins at 2 (O also threatens 5)
    s = ttt(0, 3, 1, 4)
    for seed in range(5):
        assert rollout_player(TicTacToe(), 200, seed)(s) == 2


def test_blocks_a_loss_in_one_tictactoe():
    # X: 0 8, O: 4 3 -> O threatens 5; X has no win, so X must block at 5
    s = ttt(0, 4, 8, 3)
    for seed in range(5):
        assert rollout_player(TicTacToe(), 300, seed)(s) == 5


def test_takes_a_win_and_blocks_in_connect4():
    # red (X) has three in the bottom row at columns 1 2 3; both 0 and 4 win
    s = c4(1, 1, 2, 2, 3, 3)
    assert rollout_player(Connect4(), 200)(s) in (0, 4)
    # yellow (O) to move must block red's open three (red stacks column 6 three high)
    s = c4(6, 0, 6, 1, 6)
    for seed in range(3):
        assert rollout_player(Connect4(), 400, seed)(s) == 6


class HashEvaluator:
    """Deterministic fake network: priors and value from a hash of the position."""

    def __init__(self, num_actions):
        self.num_actions = num_actions
        self.calls = []

    def __call__(self, states):
        self.calls.append(len(states))
        pol = np.stack([np.random.default_rng(hash(s.history) % 2**32).random(self.num_actions) for s in states])
        val = np.array([np.random.default_rng(hash(s.history) % 2**32 + 1).uniform(-1, 1) for s in states])
        return pol, val


def test_batched_trees_equal_separate_searches():
    game = Connect4()
    states = [c4(), c4(3), c4(3, 3, 2), c4(0, 1, 2, 3)]
    cfg = MCTSConfig(simulations=60)
    batched_eval = HashEvaluator(game.num_actions)
    together = search(states, batched_eval, cfg)
    assert max(batched_eval.calls) == len(states)  # one network call serves every tree
    for s, root in zip(states, together):
        alone = search([s], HashEvaluator(game.num_actions), cfg)[0]
        assert np.array_equal(root.N, alone.N)
        assert np.allclose(root.W, alone.W)
        assert root.N.sum() == cfg.simulations


def test_visit_policy_temperature():
    counts = np.array([0.0, 10.0, 30.0, 30.0])
    assert np.allclose(visit_policy(counts, 1.0), counts / 70)
    assert np.allclose(visit_policy(counts, 0.0), [0, 0, 0.5, 0.5])
    sharp = visit_policy(counts, 0.5)
    assert sharp[1] < counts[1] / 70 and np.isclose(sharp.sum(), 1)


def test_root_noise_keeps_a_distribution():
    s = TicTacToe().initial()
    root = search([s], RolloutEvaluator(9), MCTSConfig(simulations=1), np.random.default_rng(0), add_noise=True)[0]
    assert np.isclose(root.P.sum(), 1.0) and not np.allclose(root.P, 1 / 9)
