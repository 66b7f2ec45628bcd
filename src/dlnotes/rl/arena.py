"""Matches between players of a two-player game, and the Elo-style gap their score implies (Lecture 11).

Every player is a callable ``state -> move`` (a searcher may also offer ``choose_many(states)``, so that
one batched search serves all games of a match at once). :func:`play_match` plays ``n_games`` in lock
step, alternating who moves first, and scores a draw as half a win; a win rate ``w`` gives the rating
gap ``400 log10(w / (1 - w))`` (:func:`elo_gap`). AlphaZero and the AlphaGo pipeline are measured here
against the same fixed opponents: random play, perfect tic-tac-toe (minimax), our rollout MCTS and
OpenSpiel's C++ MCTS bot.
"""
from __future__ import annotations

import math

import numpy as np

from .games import Game, GameState
from .mcts import MCTSConfig, MCTSPlayer, RolloutEvaluator


class RandomPlayer:
    """A uniformly random legal move (seeded)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def __call__(self, state):
        moves = state.legal_moves()
        return int(moves[int(self.rng.integers(len(moves)))])


class OpenSpielMCTSPlayer:
    """``pyspiel.MCTSBot`` (C++ UCT with random-rollout evaluation) playing our game via its action history."""

    def __init__(self, game: Game, simulations: int = 1000, uct_c: float = 2.0, seed: int = 0):
        import pyspiel

        name, params = {"tictactoe": ("tic_tac_toe", {}), "connect4": ("connect_four", {})}.get(
            game.name, ("go", {"board_size": getattr(game, "size", 9), "komi": getattr(game, "komi", 7.5)}))
        self.spiel_game = pyspiel.load_game(name, params)
        evaluator = pyspiel.RandomRolloutEvaluator(1, seed)
        self.bot = pyspiel.MCTSBot(self.spiel_game, evaluator, uct_c, simulations, 1000, True, seed, False)

    def __call__(self, state: GameState) -> int:
        st = self.spiel_game.new_initial_state()
        for a in state.history:
            st.apply_action(int(a))
        return int(self.bot.step(st))


def play_match(agent, opponent, game: Game, n_games: int) -> dict[str, float]:
    """``n_games`` between ``agent`` (plays first in even games) and ``opponent``, all in lock step so the
    agent's searches are batched. Returns the agent's win/draw/loss rates and win_rate (draw = 1/2)."""
    states = [game.initial() for _ in range(n_games)]
    agent_side = [i % 2 for i in range(n_games)]  # agent is player 0 in even games
    while True:
        live = [i for i in range(n_games) if not states[i].is_terminal()]
        if not live:
            break
        ours = [i for i in live if states[i].to_play == agent_side[i]]
        if ours:
            many = getattr(agent, "choose_many", None)
            moves = many([states[i] for i in ours]) if many else [agent(states[i]) for i in ours]
            for i, a in zip(ours, moves):
                states[i] = states[i].play(a)
        for i in live:
            if i not in ours:
                states[i] = states[i].play(opponent(states[i]))
    r = np.array([states[i].returns()[agent_side[i]] for i in range(n_games)])
    win, draw, loss = float((r > 0).mean()), float((r == 0).mean()), float((r < 0).mean())
    return {"win": win, "draw": draw, "loss": loss, "win_rate": win + 0.5 * draw}


def elo_gap(win_rate: float, n_games: int) -> float:
    """Elo difference implied by a score fraction, clipped half a game from 0 and 1."""
    w = min(max(win_rate, 0.5 / n_games), 1 - 0.5 / n_games)
    return 400.0 * math.log10(w / (1 - w))


def make_opponent(name: str, game: Game, simulations: int, seed: int):
    """The fixed opponent ``name``; ``simulations`` is the search budget of the MCTS opponents."""
    if name == "random":
        return RandomPlayer(seed)
    if name == "minimax":
        from .games.tictactoe import PerfectPlayer
        return PerfectPlayer(seed)
    if name == "openspiel-mcts":
        return OpenSpielMCTSPlayer(game, simulations, 2.0, seed)
    if name == "mcts":
        return MCTSPlayer(RolloutEvaluator(game.num_actions, seed=seed), MCTSConfig(simulations=simulations), seed)
    raise ValueError(f"unknown opponent {name!r}: random | minimax | openspiel-mcts | mcts")


def opponent_available(name: str) -> str:
    """``name``, or our own rollout MCTS in place of OpenSpiel's bot where ``pyspiel`` is not installed."""
    if name == "openspiel-mcts":
        try:
            import pyspiel  # noqa: F401
        except ImportError:
            return "mcts"  # fall back to our own rollout MCTS (same algorithm, Python speed)
    return name
