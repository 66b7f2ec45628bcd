"""``dlnotes play GAME --run RUN_DIR``: a human plays a trained AlphaZero agent in the terminal.

The board is drawn after every move; the human types a move (a column for Connect Four, a cell
for tic-tac-toe, a point like ``d4`` or ``pass`` for Go). Illegal or unreadable input is
refused with a message and asked for again; ``q`` or end of input quits.
"""
from __future__ import annotations

import sys
from pathlib import Path

HELP = {"connect4": "a column 0-6", "tictactoe": "a cell 0-8", "go9": "a point like d4, or pass"}


def play_terminal(game, agent, human_side: int, readline=None, out=None) -> int | None:
    """Run one game; return the winner (0 or 1), -1 for a draw, None if the human quit."""
    readline = readline or sys.stdin.readline
    out = out or (lambda s: print(s, flush=True))
    state = game.initial()
    marks = "XO"
    out(f"You are {marks[human_side]} ({'first' if human_side == 0 else 'second'}). "
        f"Enter {HELP.get(game.name, 'a move')}; q quits.")
    while not state.is_terminal():
        out("\n" + game.render(state))
        if state.to_play == human_side:
            out(f"your move ({marks[human_side]}): ")
            line = readline()
            if not line or line.strip().lower() in ("q", "quit", "exit"):
                out("bye")
                return None
            try:
                action = game.parse_action(line)
            except ValueError as e:
                out(f"not a move: {e}. Enter {HELP.get(game.name, 'a move')}.")
                continue
            if action not in state.legal_moves():
                out(f"illegal move {game.action_to_string(action)}: "
                    f"legal moves are {', '.join(game.action_to_string(a) for a in state.legal_moves())}")
                continue
        else:
            action = agent(state)
            out(f"agent ({marks[1 - human_side]}) plays {game.action_to_string(action)}")
        state = state.play(action)
    out("\n" + game.render(state))
    r = state.returns()
    if r[0] == r[1]:
        out("draw")
        return -1
    winner = 0 if r[0] > r[1] else 1
    out("you win!" if winner == human_side else "the agent wins")
    return winner


def cmd_play(args) -> int:
    from .alphazero import load_player

    run_dir = Path(args.run)
    if not (run_dir / "config.json").exists():
        print(f"dlnotes: error: {run_dir / 'config.json'} not found: give a run directory of an alphazero recipe",
              file=sys.stderr)
        return 2
    try:
        game, agent = load_player(run_dir, args.simulations, args.seed)
    except FileNotFoundError as e:
        print(f"dlnotes: error: {e}", file=sys.stderr)
        return 3
    if game.name != args.game:
        print(f"dlnotes: error: {run_dir} was trained on {game.name}, not {args.game}", file=sys.stderr)
        return 2
    play_terminal(game, agent, human_side=0 if args.first == "human" else 1)
    return 0


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("play", help="play a trained AlphaZero agent in the terminal")
    p.add_argument("game", choices=sorted(HELP), help="which game")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory of an alphazero-* recipe")
    p.add_argument("--first", choices=["human", "agent"], default="human", help="who moves first")
    p.add_argument("--simulations", type=int, default=None, help="agent's MCTS simulations per move")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_play)
