"""Monte Carlo tree search guided by a policy prior and a value estimate (PUCT), as in AlphaGo.

Every node holds a position ``s`` and, per legal move ``a``, a visit count ``N(s, a)``, a total
value ``W(s, a)`` (from the point of view of the player to move at ``s``), the mean
``Q(s, a) = W / N`` and the prior ``P(s, a)`` from the policy network. One *simulation*:

1. **select**: from the root, repeatedly take
   ``a* = argmax_a Q(s, a) + c_puct P(s, a) sqrt(sum_b N(s, b)) / (1 + N(s, a))``
   until reaching a position not yet in the tree (or a finished game);
2. **expand and evaluate**: ask the evaluator for ``(p, v)`` at that leaf: ``p`` becomes the
   priors of its moves, ``v`` its value for the player to move (a finished game is scored
   exactly instead);
3. **back up**: add ``v`` to ``W`` along the path, negated for the other player's nodes.

At the root, ``P <- (1 - eps) P + eps Dir(alpha)`` (Dirichlet noise) makes self-play try moves the
network would not. After the simulations the move is chosen from the visit counts,
``pi(a) ~ N(root, a)^(1 / tau)`` (``tau -> 0``: the most visited move).

The evaluator is any callable ``states -> (policy (B, A), value (B,))``. :func:`search` runs many
independent trees (parallel self-play games) in lock step, so each round's leaves go to the
evaluator as one batch: that is how one network forward pass serves every game. A pure MCTS
(the classical one from the notes) is the same search with :class:`RolloutEvaluator`: uniform
priors and the result of one random playout as value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .games.base import GameState, random_playout


@dataclass
class MCTSConfig:
    simulations: int = 100  # simulations per move
    c_puct: float = 1.5  # exploration weight of the prior term
    dirichlet_alpha: float = 0.3  # concentration of the root noise (~10 / typical number of moves)
    noise_frac: float = 0.25  # eps: weight of the noise in the root priors


class Node:
    """A position in the tree with per-move statistics (arrays over its legal moves)."""

    __slots__ = ("state", "terminal", "moves", "P", "N", "W", "children")

    def __init__(self, state: GameState):
        self.state = state
        self.terminal = state.is_terminal()
        self.moves = None  # set by expand

    @property
    def expanded(self) -> bool:
        return self.moves is not None

    def expand(self, policy: np.ndarray) -> None:
        """Keep the priors of the legal moves (renormalised; uniform if the network gives them none)."""
        self.moves = np.asarray(self.state.legal_moves())
        p = np.asarray(policy, dtype=np.float64)[self.moves]
        total = p.sum()
        self.P = p / total if total > 0 else np.full(len(self.moves), 1.0 / len(self.moves))
        self.N = np.zeros(len(self.moves))
        self.W = np.zeros(len(self.moves))
        self.children = [None] * len(self.moves)

    def add_noise(self, rng: np.random.Generator, alpha: float, frac: float) -> None:
        self.P = (1 - frac) * self.P + frac * rng.dirichlet(np.full(len(self.P), alpha))

    def select(self, c_puct: float) -> int:
        """Index of the move with the largest Q + U (unvisited moves have Q = 0)."""
        q = self.W / np.maximum(self.N, 1)
        u = c_puct * self.P * math.sqrt(max(self.N.sum(), 1.0)) / (1.0 + self.N)
        return int(np.argmax(q + u))

    def child(self, i: int) -> "Node":
        if self.children[i] is None:
            self.children[i] = Node(self.state.play(int(self.moves[i])))
        return self.children[i]

    def visit_counts(self, num_actions: int) -> np.ndarray:
        out = np.zeros(num_actions)
        out[self.moves] = self.N
        return out


def backup(path: list[tuple[Node, int]], player: int, value: float) -> None:
    """Add ``value`` (for ``player``) to every edge on the path, seen from that edge's mover."""
    for node, i in path:
        node.N[i] += 1
        node.W[i] += value if node.state.to_play == player else -value


def search(states: list[GameState], evaluator, cfg: MCTSConfig, rng: np.random.Generator | None = None,
           add_noise: bool = False, roots: list[Node] | None = None) -> list[Node]:
    """Run ``cfg.simulations`` simulations on one tree per state, evaluating leaves in batches."""
    rng = rng or np.random.default_rng()
    roots = roots or [Node(s) for s in states]
    fresh = [r for r in roots if not r.expanded and not r.terminal]
    if fresh:
        pol, _ = evaluator([r.state for r in fresh])
        for r, p in zip(fresh, pol):
            r.expand(p)
    if add_noise:
        for r in roots:
            if not r.terminal:
                r.add_noise(rng, cfg.dirichlet_alpha, cfg.noise_frac)
    for _ in range(cfg.simulations):
        pending = []  # (path, leaf) waiting for the network
        for root in roots:
            if root.terminal:
                continue
            node, path = root, []
            while node.expanded and not node.terminal:
                i = node.select(cfg.c_puct)
                path.append((node, i))
                node = node.child(i)
            if node.terminal:
                player = node.state.to_play
                backup(path, player, node.state.value(player))
            else:
                pending.append((path, node))
        if pending:
            pol, val = evaluator([leaf.state for _, leaf in pending])
            for (path, leaf), p, v in zip(pending, pol, val):
                leaf.expand(p)
                backup(path, leaf.state.to_play, float(v))
    return roots


def visit_policy(counts: np.ndarray, temperature: float) -> np.ndarray:
    """``pi(a) ~ N(a)^(1/tau)``; ``tau == 0`` puts all mass on the most visited moves (ties shared)."""
    if temperature <= 1e-6:
        best = counts == counts.max()
        return best / best.sum()
    x = counts ** (1.0 / temperature)
    return x / x.sum()


def choose(counts: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    pi = visit_policy(counts, temperature)
    return int(rng.choice(len(pi), p=pi))


class RolloutEvaluator:
    """Classical MCTS evaluation: uniform priors and the mean result of random playouts."""

    def __init__(self, num_actions: int, rollouts: int = 1, seed: int = 0):
        self.num_actions, self.rollouts = num_actions, rollouts
        self.rng = np.random.default_rng(seed)

    def __call__(self, states):
        policy = np.ones((len(states), self.num_actions))
        values = np.zeros(len(states))
        for k, s in enumerate(states):
            for _ in range(self.rollouts):
                values[k] += random_playout(s, self.rng).value(s.to_play)
        return policy, values / self.rollouts


class MCTSPlayer:
    """Plays the most visited move after a search (no noise): a player for matches and the CLI."""

    def __init__(self, evaluator, cfg: MCTSConfig, seed: int = 0):
        self.evaluator, self.cfg = evaluator, cfg
        self.rng = np.random.default_rng(seed)

    def __call__(self, state: GameState) -> int:
        return self.choose_many([state])[0]

    def choose_many(self, states: list[GameState]) -> list[int]:
        roots = search(states, self.evaluator, self.cfg, self.rng)
        return [choose(r.visit_counts(s.game.num_actions), 0.0, self.rng) for r, s in zip(roots, states)]
