"""The small interface every board game implements, so search and learning never look inside a game.

A game is a pair of objects:

* a :class:`Game` (rules and constants: name, number of actions, board shape, how many input
  planes the network sees, the board's symmetry group);
* immutable :class:`GameState` objects: ``play(a)`` returns a *new* state, which is what a search
  tree wants (every node keeps its own state, no undo bookkeeping).

Players are 0 (moves first: X, red, black) and 1. Rewards follow OpenSpiel: ``returns()`` is
``(r_0, r_1)`` with +1 win, -1 loss, 0 draw, zero-sum. Action ids are OpenSpiel's too (cell
index for tic-tac-toe, column for Connect Four, ``row * 9 + col`` from the bottom-left point
plus pass ``= 81`` for Go), so a game record replays unchanged in ``pyspiel``.

The network input is ``encode()``: float planes ``(C, H, W)`` seen *from the player to move*
(plane 0 = own stones, plane 1 = opponent's), so one network plays both sides.

Symmetries: if ``g`` is a symmetry of the board (a rotation or reflection that maps legal games
to legal games with the same outcome), a training pair ``(s, pi, z)`` gives another pair
``(g s, g pi, z)``: the planes and the policy over board points must be moved by *the same*
``g``. :meth:`Game.symmetries` returns the index permutations that do it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class GameState(ABC):
    """One position. Immutable: ``play`` returns a new state."""

    game: "Game"
    to_play: int  # 0 or 1: whose move it is
    history: tuple  # actions played so far (replayable in OpenSpiel)

    _legal: list[int] | None  # legal_moves' cache: each subclass sets it to None in __init__

    def legal_moves(self) -> list[int]:
        """Sorted action ids that may be played now (empty when the game is over); computed once per state."""
        if self._legal is None:
            self._legal = [] if self.is_terminal() else self._moves()
        return self._legal

    @abstractmethod
    def _moves(self) -> list[int]:
        """:meth:`legal_moves` of a position that is not terminal."""

    @abstractmethod
    def play(self, action: int) -> "GameState":
        """The state after the player to move takes ``action`` (raises ValueError if illegal)."""

    @abstractmethod
    def is_terminal(self) -> bool: ...

    @abstractmethod
    def returns(self) -> tuple[float, float]:
        """``(r_0, r_1)`` at a terminal state: +1 win, -1 loss, 0 draw (zeros before the end)."""

    @abstractmethod
    def board(self) -> np.ndarray:
        """(H, W) int8 array: 0 empty, 1 player 0's stone, 2 player 1's stone; row 0 at the top."""

    def key(self):
        """Hashable summary of everything :meth:`encode` depends on (lets evaluators cache network outputs)."""
        return self.history

    def value(self, player: int) -> float:
        """Terminal reward of ``player``."""
        return self.returns()[player]

    def encode(self) -> np.ndarray:
        """(C, H, W) float32 planes from the player to move: own, opponent, 'player 0 to move'."""
        b = self.board()
        own, opp = (1, 2) if self.to_play == 0 else (2, 1)
        planes = np.zeros((self.game.planes, *b.shape), dtype=np.float32)
        planes[0] = b == own
        planes[1] = b == opp
        if self.game.planes > 2:
            planes[2] = 1.0 if self.to_play == 0 else 0.0
        return planes

    def __str__(self) -> str:
        return self.game.render(self)


class Game(ABC):
    """Rules and constants of one game."""

    name: str
    num_actions: int
    shape: tuple[int, int]  # (H, W) of the board
    planes: int = 3  # network input planes (see GameState.encode)
    symmetry: str = "none"  # "dihedral" (8 rotations/reflections), "mirror" (left-right) or "none"

    @abstractmethod
    def initial(self) -> GameState: ...

    def replay(self, actions) -> GameState:
        s = self.initial()
        for a in actions:
            s = s.play(int(a))
        return s

    # ------------------------------------------------------------------ symmetries
    def point_action(self, r: int, c: int) -> int:
        """Action that puts a stone on board point (r, c), r counted from the top row."""
        return r * self.shape[1] + c

    def symmetries(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each symmetry g: ``(cell_perm, action_perm)`` with ``(g x).flat = x.flat[cell_perm]``
        for any (H, W) plane and ``(g pi) = pi[action_perm]`` for a policy over actions."""
        h, w = self.shape
        idx = np.arange(h * w).reshape(h, w)
        if self.symmetry == "dihedral":
            maps = [np.rot90(idx, k) for k in range(4)] + [np.rot90(idx.T, k) for k in range(4)]
        elif self.symmetry == "mirror":
            maps = [idx, idx[:, ::-1]]
        else:
            maps = [idx]
        out = []
        for m in maps:
            cell_perm = m.reshape(-1)
            # policy entry for the action at point q of g x is pi at the action of the source cell
            action_perm = np.arange(self.num_actions)
            for q, src in enumerate(cell_perm):
                r, c = divmod(q, w)
                sr, sc = divmod(int(src), w)
                action_perm[self.point_action(r, c)] = self.point_action(sr, sc)
            out.append((cell_perm, action_perm))
        return out

    def transform(self, planes: np.ndarray, policy: np.ndarray, sym) -> tuple[np.ndarray, np.ndarray]:
        """Apply one symmetry to (..., C, H, W) planes and (..., A) policies together."""
        cell_perm, action_perm = sym
        flat = planes.reshape(*planes.shape[:-2], -1)[..., cell_perm]
        return flat.reshape(planes.shape), policy[..., action_perm]

    # ------------------------------------------------------------------ text
    def render(self, state: GameState) -> str:
        marks = {0: ".", 1: "X", 2: "O"}
        rows = ["".join(marks[int(v)] for v in row) for row in state.board()]
        return "\n".join(rows)

    def action_to_string(self, action: int) -> str:
        return str(action)

    def parse_action(self, text: str) -> int:
        """Human input -> action id (ValueError when it does not name an action)."""
        t = text.strip()
        try:
            a = int(t)
        except ValueError:
            raise ValueError(f"{t!r} is not a number") from None
        if not 0 <= a < self.num_actions:
            raise ValueError(f"{t!r} is not an action in 0..{self.num_actions - 1}")
        return a


def random_playout(state: GameState, rng: np.random.Generator) -> GameState:
    """Play uniformly random legal moves to the end."""
    while not state.is_terminal():
        moves = state.legal_moves()
        state = state.play(moves[int(rng.integers(len(moves)))])
    return state
