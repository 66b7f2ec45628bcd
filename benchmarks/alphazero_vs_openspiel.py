"""Side by side: a trained AlphaZero run against OpenSpiel's C++ MCTS bot on the same machine.

    python benchmarks/alphazero_vs_openspiel.py --run runs/alphazero-connect4/<time> \
        [--games 40] [--sims 200] [--opponent-sims 1000]

Plays ``--games`` games (alternating who moves first, draws count one half) between our MCTS
guided by the run's network and ``pyspiel.MCTSBot`` (UCT c = 2, random-rollout evaluator, solver
on), and times both players' moves. Prints one JSON line: win/draw/loss rates, the Elo-style gap,
and milliseconds per move for each side. Without ``--run`` it pits our pure rollout MCTS
(:class:`dlnotes.rl.mcts.RolloutEvaluator`, same simulation budget) against the bot, which
measures the speed of our Python search against OpenSpiel's C++ one.
"""
from __future__ import annotations

import argparse
import json
import os
import time



def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="run directory of an alphazero-* recipe")
    p.add_argument("--game", default="connect4", help="game when --run is not given")
    p.add_argument("--games", type=int, default=40)
    p.add_argument("--sims", type=int, default=None, help="our simulations per move (default: the run's eval_simulations)")
    p.add_argument("--opponent-sims", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from dlnotes.rl.alphazero import load_player
    from dlnotes.rl.arena import OpenSpielMCTSPlayer, elo_gap, play_match
    from dlnotes.rl.games import make_game
    from dlnotes.rl.mcts import MCTSConfig, MCTSPlayer, RolloutEvaluator

    if args.run:
        game, ours = load_player(args.run, args.sims, args.seed)
        label = f"alphazero({args.run})"
    else:
        game = make_game(args.game)
        ours = MCTSPlayer(RolloutEvaluator(game.num_actions, seed=args.seed),
                          MCTSConfig(simulations=args.sims or args.opponent_sims), seed=args.seed)
        label = "our rollout MCTS"
    bot = OpenSpielMCTSPlayer(game, args.opponent_sims, 2.0, args.seed)

    timing = {"ours": [0.0, 0], "bot": [0.0, 0]}

    def timed(fn, key):
        def wrapped(*a):
            t = time.perf_counter()
            out = fn(*a)
            n = len(a[0]) if isinstance(a[0], list) else 1
            timing[key][0] += time.perf_counter() - t
            timing[key][1] += n
            return out
        return wrapped

    class Timed:
        def __call__(self, s):
            return timed(ours, "ours")(s)

        def choose_many(self, states):
            return timed(ours.choose_many, "ours")(states)

    t0 = time.time()
    res = play_match(Timed(), timed(bot, "bot"), game, args.games)
    print(json.dumps({
        "benchmark": "alphazero_vs_openspiel", "game": game.name, "player": label, "games": args.games,
        "opponent": f"pyspiel.MCTSBot(sims={args.opponent_sims}, uct_c=2, random rollouts)",
        **{k: round(v, 4) for k, v in res.items()}, "elo_vs_opponent": round(elo_gap(res["win_rate"], args.games), 1),
        "ours_ms_per_move": round(1e3 * timing["ours"][0] / max(timing["ours"][1], 1), 2),
        "bot_ms_per_move": round(1e3 * timing["bot"][0] / max(timing["bot"][1], 1), 2),
        "wall_s": round(time.time() - t0, 1), "load_avg_1min": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
