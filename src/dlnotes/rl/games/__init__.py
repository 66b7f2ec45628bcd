"""Board games behind one interface (:mod:`.base`): tic-tac-toe, Connect Four, Go."""
from .base import Game, GameState, random_playout
from .connect4 import Connect4
from .go import Go
from .tictactoe import TicTacToe

GAMES = {"tictactoe": TicTacToe, "connect4": Connect4, "go9": lambda: Go(9), "go5": lambda: Go(5)}


def make_game(name: str) -> Game:
    if name not in GAMES:
        raise ValueError(f"unknown game {name!r}; choose from {sorted(GAMES)}")
    return GAMES[name]()


__all__ = ["Game", "GameState", "random_playout", "TicTacToe", "Connect4", "Go", "GAMES", "make_game"]
