"""Go on a small board (9x9 by default) with the rules OpenSpiel's ``go`` uses.

* A move puts a stone on an empty point; opponent chains left without liberties (empty
  neighbours) are captured. Chains and their liberties are found by flood fill once per
  position (:meth:`GoState._chains`), which is all that legality and capture need.
* Suicide is illegal: a move is legal if the point has an empty neighbour, or joins an own
  chain that keeps another liberty, or captures an opponent chain that was in atari.
* Ko: a stone played into an "enemy eye" (no own or empty neighbour) that captures exactly
  one stone makes the captured point illegal for the next move.
* Positional superko as OpenSpiel plays it: a (non-pass) move that recreates any earlier board
  ends the game as a draw. Boards are compared by Zobrist hashes (XOR of a random 64-bit key
  per (point, colour)).
* The game ends after two passes in a row or ``2 * size^2`` moves, and is scored by area
  (Tromp-Taylor): stones plus empty regions that touch only one colour, black minus white
  minus komi (7.5); positive means black (player 0) wins.

Action ids: ``row * size + col`` with row 0 the bottom line ("a1" = 0), and pass = ``size^2``.
"""
from __future__ import annotations

import random

import numpy as np

from .base import Game, GameState

EMPTY, BLACK, WHITE = 0, 1, 2
COLUMNS = "ABCDEFGHJKLMNOPQRST"  # Go skips the letter I


def _neighbours(size: int) -> list[tuple[int, ...]]:
    out = []
    for p in range(size * size):
        r, c = divmod(p, size)
        out.append(tuple(q for q, ok in ((p - size, r > 0), (p + size, r < size - 1),
                                         (p - 1, c > 0), (p + 1, c < size - 1)) if ok))
    return out


class GoState(GameState):
    __slots__ = ("game", "stones", "to_play", "ko", "passes", "zobrist", "seen", "superko", "history",
                 "_chain_info", "_legal")

    def __init__(self, game: "Go", stones, to_play, ko, passes, zobrist, seen, superko, history):
        self.game = game
        self.stones = stones  # tuple of size^2 colours, index = action id
        self.to_play = to_play
        self.ko = ko  # point forbidden to the player to move (-1: none)
        self.passes = passes  # consecutive passes just played
        self.zobrist = zobrist
        self.seen = seen  # frozenset of hashes of every board so far
        self.superko = superko
        self.history = history
        self._chain_info = None
        self._legal = None

    # ------------------------------------------------------------------ chains
    def _chains(self):
        """Label every stone with its chain id; return (label list, liberties set per chain, stones per chain)."""
        if self._chain_info is None:
            nb, stones = self.game.nb, self.stones
            label = [-1] * len(stones)
            libs, members = [], []
            for p, colour in enumerate(stones):
                if colour == EMPTY or label[p] >= 0:
                    continue
                gid = len(libs)
                label[p] = gid
                stack, lib, chain = [p], set(), []
                while stack:
                    q = stack.pop()
                    chain.append(q)
                    for n in nb[q]:
                        v = stones[n]
                        if v == EMPTY:
                            lib.add(n)
                        elif v == colour and label[n] < 0:
                            label[n] = gid
                            stack.append(n)
                libs.append(lib)
                members.append(chain)
            self._chain_info = (label, libs, members)
        return self._chain_info

    def _is_legal_point(self, p: int, label, libs) -> bool:
        stones = self.stones
        if stones[p] != EMPTY or p == self.ko:
            return False
        me = BLACK if self.to_play == 0 else WHITE
        for n in self.game.nb[p]:
            v = stones[n]
            if v == EMPTY:
                return True
            nlibs = len(libs[label[n]])
            if (v == me and nlibs > 1) or (v != me and nlibs == 1):
                return True  # joins a chain with another liberty, or captures a chain in atari
        return False

    # ------------------------------------------------------------------ interface
    def _moves(self) -> list[int]:
        label, libs, _ = self._chains()
        return [p for p in range(len(self.stones)) if self._is_legal_point(p, label, libs)] + [self.game.pass_action]

    def play(self, action: int) -> "GoState":
        g = self.game
        if self.is_terminal():
            raise ValueError("the game is over")
        if action == g.pass_action:
            return GoState(g, self.stones, 1 - self.to_play, -1, self.passes + 1, self.zobrist, self.seen,
                           False, self.history + (action,))
        label, libs, members = self._chains()
        if not 0 <= action < g.pass_action or not self._is_legal_point(action, label, libs):
            raise ValueError(f"illegal Go move {g.action_to_string(action)} for "
                             f"{'black' if self.to_play == 0 else 'white'}")
        me, opp = (BLACK, WHITE) if self.to_play == 0 else (WHITE, BLACK)
        stones = list(self.stones)
        stones[action] = me
        h = self.zobrist ^ g.keys[action][me]
        in_enemy_eye = all(self.stones[n] == opp for n in g.nb[action])
        captured: list[int] = []
        done = set()
        for n in g.nb[action]:
            if stones[n] == opp and label[n] not in done:
                gid = label[n]
                done.add(gid)
                if libs[gid] == {action}:  # its last liberty was just filled
                    for q in members[gid]:
                        stones[q] = EMPTY
                        h ^= g.keys[q][opp]
                    captured.extend(members[gid])
        ko = captured[0] if in_enemy_eye and len(captured) == 1 else -1
        superko = h in self.seen
        return GoState(g, tuple(stones), 1 - self.to_play, ko, 0, h, self.seen | {h}, superko,
                       self.history + (action,))

    def key(self):
        return (self.stones, self.to_play)

    def is_terminal(self) -> bool:
        return self.superko or self.passes >= 2 or len(self.history) >= self.game.max_moves

    def score(self) -> float:
        """Tromp-Taylor area score from black's side: stones + one-colour empty regions - komi."""
        nb, stones = self.game.nb, self.stones
        delta = sum(1 if v == BLACK else -1 for v in stones if v != EMPTY)
        seen = [False] * len(stones)
        for p, v in enumerate(stones):
            if v != EMPTY or seen[p]:
                continue
            seen[p] = True
            stack, size, touches = [p], 0, set()
            while stack:
                q = stack.pop()
                size += 1
                for n in nb[q]:
                    if stones[n] == EMPTY:
                        if not seen[n]:
                            seen[n] = True
                            stack.append(n)
                    else:
                        touches.add(stones[n])
            if touches == {BLACK}:
                delta += size
            elif touches == {WHITE}:
                delta -= size
        return delta - self.game.komi

    def returns(self) -> tuple[float, float]:
        if not self.is_terminal() or self.superko:
            return (0.0, 0.0)  # OpenSpiel scores a superko repetition as a draw
        s = self.score()
        return (1.0, -1.0) if s > 0 else ((-1.0, 1.0) if s < 0 else (0.0, 0.0))

    def board(self) -> np.ndarray:
        n = self.game.size
        return np.array(self.stones, dtype=np.int8).reshape(n, n)[::-1].copy()  # row 0 = top line


class Go(Game):
    symmetry = "dihedral"
    planes = 3  # own, opponent, black-to-move (komi makes the colours unequal)

    def __init__(self, size: int = 9, komi: float = 7.5, max_moves: int | None = None):
        self.size, self.komi = size, komi
        self.name = f"go{size}"
        self.shape = (size, size)
        self.pass_action = size * size
        self.num_actions = size * size + 1
        self.max_moves = max_moves or 2 * size * size
        self.nb = _neighbours(size)
        rnd = random.Random(2765481)
        self.keys = [(0, rnd.getrandbits(64), rnd.getrandbits(64)) for _ in range(size * size)]

    def initial(self) -> GoState:
        return GoState(self, (EMPTY,) * (self.size * self.size), 0, -1, 0, 0, frozenset([0]), False, ())

    def point_action(self, r: int, c: int) -> int:
        return (self.size - 1 - r) * self.size + c  # board row 0 is the top line

    def action_to_string(self, action: int) -> str:
        if action == self.pass_action:
            return "pass"
        r, c = divmod(action, self.size)
        return f"{COLUMNS[c].lower()}{r + 1}"

    def parse_action(self, text: str) -> int:
        t = text.strip().lower()
        if t in ("pass", "p"):
            return self.pass_action
        try:
            c = COLUMNS.lower().index(t[0])
            r = int(t[1:]) - 1
        except (ValueError, IndexError):
            raise ValueError(f"{text!r} is not a point like 'd4' or 'pass'") from None
        if not (0 <= r < self.size and 0 <= c < self.size):
            raise ValueError(f"{text!r} is off the {self.size}x{self.size} board")
        return r * self.size + c

    def render(self, state) -> str:
        marks = {0: "+", 1: "X", 2: "O"}
        b = state.board()
        rows = [f"{self.size - r:2d} " + "".join(marks[int(v)] for v in row) for r, row in enumerate(b)]
        return "\n".join(rows + ["   " + COLUMNS[:self.size]])
