"""Tier 2: a tiny AlphaZero run on tic-tac-toe stops losing to random play.
Tier 3: --quick recipes, resume of self-play training, `dlnotes play` driven through stdin."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dlnotes.rl.alphazero import (AlphaZeroConfig, PolicyPlayer, NetEvaluator, build_net, parallel_self_play,
                                  scheduled_lr, self_play, train_batch)
from dlnotes.rl.arena import RandomPlayer, elo_gap, play_match
from dlnotes.rl.games import Connect4, TicTacToe
from dlnotes.rl.games.tictactoe import PerfectPlayer, minimax_value, perfect_moves
from dlnotes.rl.mcts import MCTSConfig, MCTSPlayer
from dlnotes.rl.play import play_terminal


def test_minimax_reference():
    g = TicTacToe()
    assert minimax_value(g.initial()) == 0  # tic-tac-toe is a draw
    assert perfect_moves(g.replay([0, 3, 1, 4])) == [2]  # take the win
    assert sorted(perfect_moves(g.replay([4]))) == [0, 2, 6, 8]  # only corners answer a centre opening
    # perfect play never loses, even to itself
    res = play_match(PerfectPlayer(1), PerfectPlayer(2), g, 20)
    assert res["draw"] == 1.0


def test_self_play_targets_are_consistent():
    g = TicTacToe()
    torch.manual_seed(0)
    ev = NetEvaluator(build_net(g, 8, 1))
    planes, pis, zs, stats = self_play(ev, g, 4, MCTSConfig(simulations=8), temp_moves=2,
                                       rng=np.random.default_rng(0))
    assert planes.shape[1:] == (2, 3, 3) and pis.shape[1] == 9
    assert np.allclose(pis.sum(1), 1) and set(np.unique(zs)) <= {-1.0, 0.0, 1.0}
    # the policy target only covers empty cells
    occupied = planes[:, :2].sum(1).reshape(len(pis), 9) > 0
    assert (pis[occupied] == 0).all()
    assert ev.calls < len(zs) * 9  # leaves of the 4 games were evaluated in batches


def test_parallel_self_play_uses_the_sent_weights():
    """A worker process given the current weights and a seed plays exactly the games the main process
    would play with them; with two workers the games are split and every record is kept."""
    import multiprocessing as mp

    from dlnotes.rl.alphazero import _worker_init

    g = TicTacToe()
    torch.manual_seed(3)
    net = build_net(g, 8, 1)
    with torch.no_grad():  # weights unlike a fresh build's, so a worker that ignored them would differ
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.eval()
    mcfg = MCTSConfig(simulations=12, dirichlet_alpha=1.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers, so both sides compute bit-identical network outputs
    try:
        with mp.get_context("spawn").Pool(2, _worker_init, ("tictactoe", 8, 1)) as pool:
            seed = int(np.random.default_rng(7).integers(2**31))
            one = parallel_self_play(pool, net, 6, 1, mcfg, 3, np.random.default_rng(7))
            here = self_play(NetEvaluator(net), g, 6, mcfg, 3, np.random.default_rng(seed))
            two = parallel_self_play(pool, net, 7, 2, mcfg, 3, np.random.default_rng(8))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one[:3], here[:3]):
        assert np.array_equal(a, b)
    assert one[3] == here[3]
    planes, pis, zs, stats = two
    assert len(planes) == len(pis) == len(zs) >= 7 * 5  # every tic-tac-toe game lasts 5 moves or more
    assert np.allclose(pis.sum(1), 1) and set(np.unique(zs)) <= {-1.0, 0.0, 1.0}
    assert 5 <= stats["game_length"] <= 9 and 0 <= stats["draws"] <= 1


def test_scheduled_lr_decays_on_the_clock_or_by_generation():
    timed = AlphaZeroConfig(lr=2e-3, lr_final=0.1, time_budget_s=100.0)
    assert scheduled_lr(timed, 0, 0.0) == pytest.approx(2e-3)
    assert scheduled_lr(timed, 50, 50.0) == pytest.approx(0.5 * (2e-3 + 2e-4))
    assert scheduled_lr(timed, 9, 100.0) == pytest.approx(2e-4) == scheduled_lr(timed, 9, 130.0)
    counted = AlphaZeroConfig(lr=1e-3, lr_final=0.5, time_budget_s=0.0, generations=10)
    assert scheduled_lr(counted, 10, 999.0) == pytest.approx(5e-4)  # no budget: generations count
    assert scheduled_lr(counted, 5, 0.0) == pytest.approx(7.5e-4)
    constant = AlphaZeroConfig(lr=1e-3)
    assert all(scheduled_lr(constant, g, 60.0 * g) == 1e-3 for g in range(0, 200, 20))


@pytest.mark.parametrize("bad, message", [("lr_final=0", "lr_final: 0"), ("workers=0", "workers: 0"),
                                          ("final_simulations=-1", "final_simulations: -1")])
def test_alphazero_rejects_bad_config_before_making_a_run(tmp_path, capsys, bad, message):
    from dlnotes.cli import main as cli_main

    rc = cli_main(["run", "alphazero-connect4", "--quick", "--set", bad, "--runs", str(tmp_path / "runs")])
    assert rc != 0
    assert message in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_evaluator_survives_its_cache_filling_up():
    """A batch that mixes cached positions with new ones that overflow the cache still gets every
    position's output (long searches fill it: 40 games x 1600 simulations)."""
    g = TicTacToe()
    torch.manual_seed(0)
    net = build_net(g, 8, 1)
    ev, plain = NetEvaluator(net, cache_size=4), NetEvaluator(net)
    first = [g.replay([a]) for a in range(3)]
    ev(first)
    batch = first + [g.replay([3, b]) for b in (0, 1, 2, 4)]  # 3 cached + 4 new > 4 slots
    p, v = ev(batch)
    p_ref, v_ref = plain(batch)
    assert np.allclose(p, p_ref, atol=1e-6) and np.allclose(v, v_ref, atol=1e-6)
    assert len(ev.cache) <= 4 + 4 and ev.hits == 3


def test_tiny_alphazero_stops_losing_to_random():
    """Five small generations of self-play take the network from losing ~40% of its games against
    random play (raw policy, no search) to losing almost none (raw policy, and with an 8-simulation search)."""
    g = TicTacToe()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = build_net(g, 16, 1)
    before = play_match(PolicyPlayer(net), RandomPlayer(1), g, 100)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    syms = g.symmetries()
    data = []
    for gen in range(5):
        data.append(self_play(NetEvaluator(net), g, 24, MCTSConfig(simulations=24, dirichlet_alpha=1.0), 3, rng)[:3])
        bp, bpi, bz = (np.concatenate([d[k] for d in data[-4:]]) for k in range(3))  # replay window: 4 generations
        for _ in range(40):
            idx = rng.integers(len(bz), size=128)
            train_batch(net, opt, g, syms, bp[idx], bpi[idx], bz[idx], rng, "cpu")
    after = play_match(PolicyPlayer(net), RandomPlayer(1), g, 100)
    searched = play_match(MCTSPlayer(NetEvaluator(net), MCTSConfig(simulations=8)), RandomPlayer(1), g, 100)
    assert before["loss"] >= 0.2, before
    assert after["loss"] <= 0.08 and after["win_rate"] >= before["win_rate"] + 0.25, after
    assert searched["loss"] <= 0.05, searched


def test_elo_gap():
    assert elo_gap(0.5, 40) == 0
    assert elo_gap(0.76, 40) == pytest.approx(200, abs=1)
    assert np.isfinite(elo_gap(1.0, 40)) and elo_gap(1.0, 40) > 600


def test_quick_recipes_and_resume(run_recipe, monkeypatch):
    run_dir, res = run_recipe("alphazero-tictactoe")
    assert res["generations"] == 3 and 0 <= res["win_rate"] <= 1 and "target" in res
    curve = json.loads((run_dir / "curve.json").read_text())
    assert curve and curve[-1]["games"] == 10
    # interrupt after the first generation, then resume: the replay window and optimiser come back
    monkeypatch.setenv("DLNOTES_STOP_AFTER", "1")
    with pytest.raises(KeyboardInterrupt):
        run_recipe("alphazero-tictactoe")
    monkeypatch.delenv("DLNOTES_STOP_AFTER")
    stopped = sorted((run_dir.parent).iterdir())[-1]
    assert (stopped / "checkpoints" / "latest").exists()
    from dlnotes.engine import execute
    _, res2 = execute(resume=stopped, quiet=True)
    assert res2["generations"] == 3
    rows = [json.loads(ln) for ln in (stopped / "metrics.jsonl").read_text().splitlines()]
    replay = [r["replay_positions"] for r in rows if "replay_positions" in r]
    assert len(replay) == 3 and replay[0] < replay[1] < replay[2]  # the window kept generation 0's games


def test_go_quick_recipe_plays_legal_games(run_recipe):
    _, res = run_recipe("alphazero-go9")
    assert res["generations"] == 1 and 0 <= res["win_rate"] <= 1


class ColumnZeroAgent:
    def __call__(self, state):
        return 0 if 0 in state.legal_moves() else state.legal_moves()[0]


def test_play_refuses_illegal_moves():
    lines = iter(["0\n", "0\n", "0\n", "9\n", "abc\n", "0\n", "q\n"])
    out = []
    result = play_terminal(Connect4(), ColumnZeroAgent(), 0, readline=lambda: next(lines), out=out.append)
    text = "\n".join(out)
    assert result is None and "bye" in text
    assert "illegal move 0" in text  # column 0 is full after 3 + 3 discs
    assert "not a move" in text and text.count("|") > 20  # bad input refused, board drawn


def test_dlnotes_play_through_stdin(run_recipe):
    run_dir, _ = run_recipe("alphazero-connect4")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "dlnotes.cli", "play", "connect4", "--run", str(run_dir)],
                          input="7\nhello\n3\n3\n3\n3\n3\n3\n3\n2\n4\n1\n5\n0\n6\n" * 3, capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "|. . . . . . .|" in out and "0 1 2 3 4 5 6" in out  # the board is drawn
    assert "not a move" in out  # 7 and 'hello' are refused
    assert "agent (O) plays" in out
    assert "illegal move 3" in out or "you win" in out or "the agent wins" in out or "draw" in out
    bad = subprocess.run([sys.executable, "-m", "dlnotes.cli", "play", "tictactoe", "--run", str(run_dir)],
                         input="", capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "trained on connect4" in bad.stderr


def test_time_budget_counts_training_not_matches(run_recipe, monkeypatch):
    """Matches against the opponent are measurement: a slow match does not eat the training budget,
    and both walls are reported. No generation starts that would end past the budget."""
    import dlnotes.rl.alphazero as az
    real_match, real_self_play = az.play_match, az.self_play

    def slow_match(*a, **k):
        time.sleep(1.0)
        return real_match(*a, **k)

    def slow_self_play(*a, **k):  # every generation takes a little over 1 s
        time.sleep(1.0)
        return real_self_play(*a, **k)

    monkeypatch.setattr(az, "play_match", slow_match)
    monkeypatch.setattr(az, "self_play", slow_self_play)
    run_dir, res = run_recipe("alphazero-tictactoe", overrides=["generations=50", "time_budget_s=3.5",
                                                                "eval_every=1", "random_games=0", "final_games=2",
                                                                "games_per_generation=8", "simulations=8"])
    assert 2 <= res["generations"] <= 3  # stopped by the training budget, not by the generation count
    assert res["eval_wall_s"] >= res["generations"] * 1.0  # one slow match after every generation
    assert res["generations"] * 1.0 <= res["train_wall_s"] < 3.5 + 1.0  # the matches did not count
    curve = json.loads((run_dir / "curve.json").read_text())
    assert [r["train_s"] for r in curve] == sorted(r["train_s"] for r in curve)
    # the rule, whatever the machine's speed: a generation starts only if it would end within the budget, were it
    # as long as the one before (train_s is the training clock after each generation, rounded to 0.1 s)
    ends = [0.0] + [r["train_s"] for r in curve[:int(res["generations"])]]  # (the final match repeats the last)
    took = np.diff(ends)
    assert all(ends[k] + took[k - 1] <= 3.5 + 0.2 for k in range(1, len(took)))
    assert res["train_wall_s"] + took[-1] > 3.5 - 0.2  # and the next one would not have
    assert curve[-1]["wall_s"] >= curve[-1]["train_s"] + res["generations"] * 1.0
