"""Tic-tac-toe on bitboards: each player's marks are a 9-bit integer, cell ``3 * row + col``.

A line is won when ``marks & line == line`` for one of the 8 line masks; the board is full when
the two players' bits cover all nine cells. Action ids are cell ids, as in OpenSpiel's
``tic_tac_toe``.
"""
from __future__ import annotations

import numpy as np

from .base import Game, GameState

LINES = [0b000000111, 0b000111000, 0b111000000,  # rows
         0b001001001, 0b010010010, 0b100100100,  # columns
         0b100010001, 0b001010100]  # diagonals
FULL = 0b111111111
_CELL_BITS = np.arange(9)


def _wins(marks: int) -> bool:
    for line in LINES:
        if marks & line == line:
            return True
    return False


class TicTacToeState(GameState):
    __slots__ = ("marks", "to_play", "winner", "history", "_legal")

    def __init__(self, marks=(0, 0), to_play=0, winner=-1, history=()):
        self.marks = marks  # (bits of player 0, bits of player 1)
        self.to_play = to_play
        self.winner = winner  # -1: none yet
        self.history = history
        self._legal = None

    game = None  # set below

    def _moves(self) -> list[int]:
        taken = self.marks[0] | self.marks[1]
        return [i for i in range(9) if not taken >> i & 1]

    def play(self, action: int) -> "TicTacToeState":
        if self.is_terminal() or not 0 <= action < 9 or (self.marks[0] | self.marks[1]) >> action & 1:
            raise ValueError(f"illegal tic-tac-toe move {action} in\n{self}")
        p = self.to_play
        mine = self.marks[p] | (1 << action)
        marks = (mine, self.marks[1]) if p == 0 else (self.marks[0], mine)
        winner = p if _wins(mine) else -1
        return TicTacToeState(marks, 1 - p, winner, self.history + (action,))

    def is_terminal(self) -> bool:
        return self.winner >= 0 or (self.marks[0] | self.marks[1]) == FULL

    def key(self):
        return self.marks

    def returns(self) -> tuple[float, float]:
        if self.winner < 0:
            return (0.0, 0.0)
        return (1.0, -1.0) if self.winner == 0 else (-1.0, 1.0)

    def board(self) -> np.ndarray:
        b = ((self.marks[0] >> _CELL_BITS) & 1) + 2 * ((self.marks[1] >> _CELL_BITS) & 1)
        return b.astype(np.int8).reshape(3, 3)


class TicTacToe(Game):
    name = "tictactoe"
    num_actions = 9
    shape = (3, 3)
    planes = 2  # symmetric game: own / opponent planes suffice
    symmetry = "dihedral"

    def initial(self) -> TicTacToeState:
        return TicTacToeState()

    def render(self, state) -> str:
        marks = {0: ".", 1: "X", 2: "O"}
        b = state.board()
        return "\n".join(" ".join(marks[int(v)] if v else str(3 * r + c) for c, v in enumerate(row))
                         for r, row in enumerate(b))


TicTacToeState.game = TicTacToe()


# ---------------------------------------------------------------------- perfect play (minimax)
_SOLVED: dict = {}


def minimax_value(state: TicTacToeState) -> int:
    """Game-theoretic value for the player to move: +1 win, 0 draw, -1 loss (negamax, memoised)."""
    key = (state.marks, state.to_play)
    if key not in _SOLVED:
        if state.is_terminal():
            _SOLVED[key] = int(state.value(state.to_play))
        else:
            _SOLVED[key] = max(-minimax_value(state.play(a)) for a in state.legal_moves())
    return _SOLVED[key]


def perfect_moves(state: TicTacToeState) -> list[int]:
    """Every move that keeps the minimax value (a perfect player picks among them)."""
    best = minimax_value(state)
    return [a for a in state.legal_moves() if -minimax_value(state.play(a)) == best]


class PerfectPlayer:
    """Minimax player choosing uniformly among optimal moves (so 100 games are not 100 copies)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def __call__(self, state: TicTacToeState) -> int:
        moves = perfect_moves(state)
        return moves[int(self.rng.integers(len(moves)))]
