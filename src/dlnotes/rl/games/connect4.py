"""Connect Four (6 rows x 7 columns) on bitboards.

Each column ``c`` owns bits ``7c .. 7c+5`` (bottom to top) plus a sentinel bit ``7c+6`` that is
always zero, so shifts never carry a line from one column into the next. ``mask`` holds every
occupied cell; dropping a disc in column ``c`` is ``mask | (mask + bottom(c))`` (the addition
carries up to the first free cell). A player has four in a row when, for a direction shift
``s`` (1 vertical, 7 horizontal, 6 and 8 diagonals), ``m = x & (x >> s)`` and ``m & (m >> 2s)``
is non-zero. Action ids are columns, as in OpenSpiel's ``connect_four``.
"""
from __future__ import annotations

import numpy as np

from .base import Game, GameState

ROWS, COLS = 6, 7
H1 = ROWS + 1
BOTTOM = [1 << (H1 * c) for c in range(COLS)]
TOP = [1 << (H1 * c + ROWS - 1) for c in range(COLS)]
ALL_TOPS = sum(TOP)
# bit index of board cell (r, c) with r = 0 the top row, for encoding
_BIT_OF_CELL = np.array([[H1 * c + (ROWS - 1 - r) for c in range(COLS)] for r in range(ROWS)], dtype=np.int64)


def four_in_a_row(x: int) -> bool:
    for s in (1, H1, H1 - 1, H1 + 1):
        m = x & (x >> s)
        if m & (m >> (2 * s)):
            return True
    return False


class Connect4State(GameState):
    __slots__ = ("bits", "mask", "to_play", "winner", "history", "_legal")

    def __init__(self, bits=(0, 0), mask=0, to_play=0, winner=-1, history=()):
        self.bits = bits  # (discs of player 0, discs of player 1)
        self.mask = mask
        self.to_play = to_play
        self.winner = winner
        self.history = history
        self._legal = None

    game = None  # set below

    def _moves(self) -> list[int]:
        return [c for c in range(COLS) if not self.mask & TOP[c]]

    def play(self, action: int) -> "Connect4State":
        if self.is_terminal() or not 0 <= action < COLS or self.mask & TOP[action]:
            raise ValueError(f"illegal Connect Four move {action} in\n{self}")
        p = self.to_play
        mask = self.mask | (self.mask + BOTTOM[action])
        mine = self.bits[p] | (mask ^ self.mask)  # the new disc is the one bit that changed
        bits = (mine, self.bits[1]) if p == 0 else (self.bits[0], mine)
        winner = p if four_in_a_row(mine) else -1
        return Connect4State(bits, mask, 1 - p, winner, self.history + (action,))

    def is_terminal(self) -> bool:
        return self.winner >= 0 or self.mask & ALL_TOPS == ALL_TOPS

    def key(self):
        return self.bits

    def returns(self) -> tuple[float, float]:
        if self.winner < 0:
            return (0.0, 0.0)
        return (1.0, -1.0) if self.winner == 0 else (-1.0, 1.0)

    def board(self) -> np.ndarray:
        b0 = (np.int64(self.bits[0]) >> _BIT_OF_CELL) & 1
        b1 = (np.int64(self.bits[1]) >> _BIT_OF_CELL) & 1
        return (b0 + 2 * b1).astype(np.int8)  # (6, 7), row 0 on top


class Connect4(Game):
    name = "connect4"
    num_actions = COLS
    shape = (ROWS, COLS)
    planes = 2
    symmetry = "mirror"

    def initial(self) -> Connect4State:
        return Connect4State()

    def point_action(self, r: int, c: int) -> int:
        return c  # a move is a column: the left-right mirror maps column c to 6 - c

    def render(self, state) -> str:
        marks = {0: ".", 1: "X", 2: "O"}
        rows = ["|" + " ".join(marks[int(v)] for v in row) + "|" for row in state.board()]
        return "\n".join(rows + [" " + " ".join(str(c) for c in range(COLS))])


Connect4State.game = Connect4()
