"""AlphaZero: one network ``f_theta(s) = (p, v)`` improved by its own tree search (Lecture 11).

AlphaGo's policy and value networks and its tree search become one loop:

1. **self-play with search**: many games are played in parallel; at every move MCTS
   (:mod:`dlnotes.rl.mcts`, PUCT with Dirichlet noise at the root, leaves evaluated by
   ``f_theta`` in one batch across all games) returns visit counts ``N(s, a)``. The
   training target is ``pi(a|s) = N(s, a) / sum_b N(s, b)``; the move played is sampled from
   ``pi`` for the first ``temp_moves`` moves (temperature 1) and is the most visited one after
   (temperature -> 0). When a game ends, every position gets ``z = +1/-1/0`` from its mover's view.
   On CPU the games can be split over ``workers`` processes, each with a copy of the current weights.
2. **train** on minibatches drawn from a replay window (the last ``window`` generations of
   games), each position moved by a random board symmetry, minimising
   ``l = (z - v)^2 - pi^T log p + c ||theta||^2``, with Adam's step size lowered along a cosine
   (``lr_final``) as the time budget runs out.
3. repeat; every ``eval_every`` generations the search player meets a fixed opponent
   (OpenSpiel's MCTS bot, perfect minimax, or random play; :mod:`dlnotes.rl.arena`) and the win
   rate ``w`` (draws count one half) gives an Elo-style rating gap ``400 log10(w / (1 - w))``.

The time budget ``time_budget_s`` counts training (self-play, updates, checkpoints); no generation
starts that would end past it (each is assumed to take as long as the one before). The matches
are measurement, timed apart and reported as ``eval_wall_s`` next to ``train_wall_s``.

One generation is one engine step: the network, optimiser, replay window and the rating curve
are in the checkpoint, so ``dlnotes run --resume RUN_DIR`` continues self-play training.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine import ConfigError, Run, Target, recipe
from ..engine.schedules import set_lr, warmup_cosine
from .arena import RandomPlayer, elo_gap, make_opponent, opponent_available, play_match
from .games import Game, GameState, make_game
from .mcts import MCTSConfig, MCTSPlayer, Node, choose, search, visit_policy


# ---------------------------------------------------------------------- the network
class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch)
        self.c2, self.b2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(x + self.b2(self.c2(y)))


class PolicyValueNet(nn.Module):
    """Conv tower on the board planes with a policy head (logits over actions) and a value head (tanh)."""

    def __init__(self, planes: int, shape: tuple[int, int], num_actions: int, channels: int = 64, blocks: int = 4):
        super().__init__()
        h, w = shape
        self.stem = nn.Sequential(nn.Conv2d(planes, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.tower = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.policy_head = nn.Sequential(nn.Conv2d(channels, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(),
                                         nn.Flatten(), nn.Linear(2 * h * w, num_actions))
        self.value_head = nn.Sequential(nn.Conv2d(channels, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU(),
                                        nn.Flatten(), nn.Linear(h * w, 64), nn.ReLU(), nn.Linear(64, 1), nn.Tanh())

    def forward(self, x: torch.Tensor):
        feat = self.tower(self.stem(x))  # (B, ch, H, W)
        return self.policy_head(feat), self.value_head(feat).squeeze(-1)  # (B, A), (B,)


def build_net(game: Game, channels: int, blocks: int) -> PolicyValueNet:
    return PolicyValueNet(game.planes, game.shape, game.num_actions, channels, blocks)


class NetEvaluator:
    """``states -> (p, v)`` for MCTS: one forward pass for the whole batch.

    Outputs are cached by position (``state.key()``) until :meth:`clear` (call it whenever the
    weights change): successive searches of one game revisit the same positions, and parallel
    self-play games share their openings."""

    def __init__(self, net: PolicyValueNet, device="cpu", cache_size: int = 200_000):
        self.net, self.device = net, torch.device(device)
        self.cache: dict = {}
        self.cache_size = cache_size
        self.calls = self.positions = self.hits = 0

    def clear(self) -> None:
        self.cache.clear()

    @torch.no_grad()
    def __call__(self, states: list[GameState]):
        keys = [s.key() for s in states]
        found = {k: self.cache[k] for k in keys if k in self.cache}  # kept even if the cache is emptied below
        todo = {}  # key -> one state to evaluate (duplicates in the batch are evaluated once)
        for k, s in zip(keys, states):
            if k not in found and k not in todo:
                todo[k] = s
        self.hits += len(states) - len(todo)
        if todo:
            self.net.eval()
            x = torch.from_numpy(np.stack([s.encode() for s in todo.values()])).to(self.device)  # (B, C, H, W)
            logits, v = self.net(x)
            p = torch.softmax(logits.float(), -1).cpu().numpy()
            v = v.float().cpu().numpy()
            if len(self.cache) + len(todo) > self.cache_size:
                self.cache.clear()
            for j, k in enumerate(todo):
                found[k] = self.cache[k] = (p[j], v[j])
            self.calls += 1
            self.positions += len(todo)
        return np.stack([found[k][0] for k in keys]), np.array([found[k][1] for k in keys])


class PolicyPlayer:
    """The raw policy network without search: argmax of p over legal moves."""

    def __init__(self, net):
        self.evaluator = NetEvaluator(net)

    def __call__(self, state):
        p, _ = self.evaluator([state])
        legal = state.legal_moves()
        return int(legal[int(np.argmax(p[0][legal]))])


# ---------------------------------------------------------------------- self-play
def self_play(evaluator, game: Game, n_games: int, mcfg: MCTSConfig, temp_moves: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Play ``n_games`` in lock step; return planes (N, C, H, W), targets pi (N, A), z (N,), stats."""
    states: list[GameState] = [game.initial() for _ in range(n_games)]
    roots = [None] * n_games  # the subtree under the move just played is reused by the next search
    records: list[list] = [[] for _ in range(n_games)]
    active = list(range(n_games))
    while active:
        searched = search([states[i] for i in active], evaluator, mcfg, rng, add_noise=True,
                          roots=[roots[i] or Node(states[i]) for i in active])
        for i, root in zip(active, searched):
            s = states[i]
            counts = root.visit_counts(game.num_actions)
            records[i].append((s.encode(), visit_policy(counts, 1.0), s.to_play))
            tau = 1.0 if len(s.history) < temp_moves else 0.0
            a = choose(counts, tau, rng)
            roots[i] = root.child(int(np.flatnonzero(root.moves == a)[0]))
            states[i] = roots[i].state
        active = [i for i in active if not states[i].is_terminal()]
    planes, pis, zs = [], [], []
    for s, rec in zip(states, records):
        ret = s.returns()
        for x, pi, player in rec:
            planes.append(x)
            pis.append(pi)
            zs.append(ret[player])
    outcomes = np.array([s.returns()[0] for s in states])
    stats = {"first_player_wins": float((outcomes > 0).mean()), "draws": float((outcomes == 0).mean()),
             "game_length": float(np.mean([len(s.history) for s in states]))}
    return (np.stack(planes).astype(np.uint8), np.stack(pis).astype(np.float32),
            np.array(zs, dtype=np.float32), stats)


_WORKER: dict = {}  # per self-play process: its game and network, built once


def _worker_init(game_name: str, channels: int, blocks: int) -> None:
    torch.set_num_threads(1)  # two processes at one thread each beat one process at two (small convs)
    game = make_game(game_name)
    _WORKER.update(game=game, net=build_net(game, channels, blocks).eval())


def _worker_self_play(args):
    weights, n_games, mcfg, temp_moves, seed = args
    net = _WORKER["net"]
    net.load_state_dict(weights)
    return self_play(NetEvaluator(net), _WORKER["game"], n_games, mcfg, temp_moves, np.random.default_rng(seed))


def parallel_self_play(pool, net, n_games: int, workers: int, mcfg: MCTSConfig, temp_moves: int,
                       rng: np.random.Generator):
    """:func:`self_play` split over ``workers`` processes (each one a share of the games, its own tree
    search and its own copy of the current weights); results concatenated, stats averaged by games."""
    weights = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    shares = [len(c) for c in np.array_split(np.arange(n_games), workers) if len(c)]
    jobs = [(weights, k, mcfg, temp_moves, int(rng.integers(2**31))) for k in shares]
    parts = pool.map(_worker_self_play, jobs)
    stats = {key: float(sum(p[3][key] * k for p, k in zip(parts, shares)) / n_games) for key in parts[0][3]}
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]), stats)


def train_batch(net, opt, game: Game, syms, planes, pis, zs, rng, device) -> dict[str, float]:
    """One update on (planes, pi, z), each position moved by a random symmetry."""
    k = rng.integers(len(syms), size=len(zs))
    planes, pis = planes.astype(np.float32), pis.copy()
    for j, sym in enumerate(syms):
        sel = k == j
        if sel.any():
            planes[sel], pis[sel] = game.transform(planes[sel], pis[sel], sym)
    x = torch.from_numpy(planes).to(device)
    pi_t, z_t = torch.from_numpy(pis).to(device), torch.from_numpy(zs).to(device)
    net.train()
    logits, v = net(x)
    policy_loss = -(pi_t * F.log_softmax(logits, -1)).sum(-1).mean()  # -pi^T log p
    value_loss = F.mse_loss(v, z_t)  # (z - v)^2
    loss = policy_loss + value_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": loss.item(), "policy_loss": policy_loss.item(), "value_loss": value_loss.item()}


# ---------------------------------------------------------------------- the recipe
@dataclass
class AlphaZeroConfig:
    game: str = "connect4"  # tictactoe | connect4 | go9
    channels: int = 32  # conv channels of the residual tower
    blocks: int = 3  # residual blocks
    generations: int = 10_000  # self-play -> train iterations at most (the time budget usually ends a run first)
    time_budget_s: float = 7200.0  # stop starting new generations after this many seconds of training (0: no limit)
    games_per_generation: int = 32  # self-play games per generation, searched in lock step
    workers: int = 1  # self-play processes on CPU, each with a share of the games (1: in-process)
    simulations: int = 50  # MCTS simulations per self-play move
    c_puct: float = 1.5  # PUCT exploration weight
    dirichlet_alpha: float = 1.0  # root noise concentration (about 10 / number of legal moves)
    noise_frac: float = 0.25  # root noise weight eps
    temp_moves: int = 10  # moves sampled at temperature 1; later moves are the most visited
    window: int = 8  # generations of games kept in the replay window
    train_steps: int = 40  # minibatch updates per generation
    batch_size: int = 256  # positions per update
    lr: float = 2e-3  # Adam learning rate
    lr_final: float = 1.0  # lr at the end of the budget as a fraction of lr (cosine decay; 1: constant)
    weight_decay: float = 1e-4  # c in c ||theta||^2
    eval_every: int = 5  # generations between matches against the opponent (0: only at the end)
    eval_games: int = 20  # games per match during training (alternating who moves first)
    eval_simulations: int = 100  # our search budget per move in matches
    opponent: str = "openspiel-mcts"  # openspiel-mcts | mcts (ours, rollouts) | minimax | random
    opponent_simulations: int = 1000  # opponent search budget (MCTS opponents)
    final_games: int = 40  # games in the final match
    final_simulations: int = 0  # our search budget per move in the final match (0: eval_simulations)
    random_games: int = 20  # games against random play at each evaluation
    ckpt_every: int = 1  # generations between checkpoints

    def check(self):
        if not 0.0 < self.lr_final <= 1.0:
            raise ConfigError(f"lr_final: {self.lr_final}; the final learning rate is a fraction of lr in (0, 1] "
                              f"(1: constant; alphazero-connect4: 0.1)")
        if self.workers < 1:
            raise ConfigError(f"workers: {self.workers}; self-play runs in 1 (in-process) or more processes")
        if self.final_simulations < 0:
            raise ConfigError(f"final_simulations: {self.final_simulations}; use a positive search budget, "
                              f"or 0 for eval_simulations")


def scheduled_lr(cfg: AlphaZeroConfig, gen: int, elapsed_s: float) -> float:
    """Cosine decay from ``lr`` to ``lr_final * lr`` over the run, measured in elapsed share of the time
    budget, or in generations when there is none (AlphaZero lowered its step size as training went
    on; a run stopped by the clock decays on the clock)."""
    if cfg.time_budget_s:
        return warmup_cosine(min(elapsed_s, cfg.time_budget_s), cfg.time_budget_s, cfg.lr, cfg.lr_final * cfg.lr)
    return warmup_cosine(gen, cfg.generations, cfg.lr, cfg.lr_final * cfg.lr)


def alphazero(cfg: AlphaZeroConfig, run: Run) -> dict[str, float]:
    game = make_game(cfg.game)
    net = build_net(game, cfg.channels, cfg.blocks).to(run.device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run.watch(model=net, optimizer=opt)
    start = run.restore()
    rng = np.random.default_rng(run.state.get("rng_seed", 12345) + start)
    buf = run.state.setdefault("replay", {})
    curve = run.state.setdefault("curve", [])
    opponent_name = opponent_available(cfg.opponent)
    mcfg = MCTSConfig(cfg.simulations, cfg.c_puct, cfg.dirichlet_alpha, cfg.noise_frac)
    ecfg = MCTSConfig(cfg.eval_simulations, cfg.c_puct)
    syms = game.symmetries()
    evaluator = NetEvaluator(net, run.device)
    run.print(f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters; opponent {opponent_name}")
    pool = None
    if cfg.workers > 1 and run.device.type == "cpu":
        import multiprocessing as mp
        pool = mp.get_context("spawn").Pool(cfg.workers, _worker_init, (cfg.game, cfg.channels, cfg.blocks))
    t0 = time.time()
    state = run.state
    state.setdefault("train_s", state.get("wall_before", 0.0))  # training: self-play, updates, checkpoints
    state.setdefault("eval_s", 0.0)  # matches against the opponent, timed apart from training

    def trained_s() -> float:
        return state["train_s"] + time.time() - t0

    def evaluate(gen: int, n_games: int, simulations: int = 0) -> dict:
        train_s = trained_s()
        search_cfg = MCTSConfig(simulations, cfg.c_puct) if simulations else ecfg
        player = MCTSPlayer(NetEvaluator(net, run.device), search_cfg, seed=gen)
        opp = make_opponent(opponent_name, game, cfg.opponent_simulations, seed=1000 + gen)
        res = play_match(player, opp, game, n_games)
        rnd = play_match(player, RandomPlayer(gen), game, cfg.random_games) if cfg.random_games else {}
        row = {"generation": gen, "win_rate": res["win_rate"], "draw_rate": res["draw"], "loss_rate": res["loss"],
               "elo_vs_opponent": elo_gap(res["win_rate"], n_games), "games": n_games,
               "simulations": search_cfg.simulations,
               "win_rate_vs_random": rnd.get("win_rate"), "loss_rate_vs_random": rnd.get("loss"),
               "train_s": round(train_s, 1),
               "wall_s": round(time.time() - t0 + state.get("wall_before", 0.0), 1)}
        curve.append(row)
        return row

    gen = start
    try:
        for gen in run.steps(cfg.generations, unit="gen"):
            # stop before a generation that would end past the budget (it takes about as long as the last)
            if cfg.time_budget_s and trained_s() + state.get("last_gen_s", 0.0) > cfg.time_budget_s:
                run.print(f"training budget {cfg.time_budget_s:.0f}s reached after {gen} generations "
                          f"({trained_s():.0f}s of training, {state['eval_s']:.0f}s of matches)")
                break
            lr = scheduled_lr(cfg, gen, trained_s())
            set_lr(opt, lr)
            ts = time.time()
            evaluator.clear()  # the weights changed since the last generation
            if pool is not None:
                planes, pis, zs, stats = parallel_self_play(pool, net, cfg.games_per_generation, cfg.workers, mcfg,
                                                            cfg.temp_moves, rng)
            else:
                planes, pis, zs, stats = self_play(evaluator, game, cfg.games_per_generation, mcfg, cfg.temp_moves, rng)
            selfplay_s = time.time() - ts
            run.state["positions"] = run.state.get("positions", 0) + len(zs)
            gens = np.full(len(zs), gen, dtype=np.int64)
            if buf:  # append, then drop generations older than the window
                keep = buf["gen"].numpy() > gen - cfg.window
                buf["planes"] = torch.cat([buf["planes"][keep], torch.from_numpy(planes)])
                buf["pi"] = torch.cat([buf["pi"][keep], torch.from_numpy(pis)])
                buf["z"] = torch.cat([buf["z"][keep], torch.from_numpy(zs)])
                buf["gen"] = torch.cat([buf["gen"][keep], torch.from_numpy(gens)])
            else:
                buf.update(planes=torch.from_numpy(planes), pi=torch.from_numpy(pis), z=torch.from_numpy(zs),
                           gen=torch.from_numpy(gens))
            n = len(buf["z"])
            bp, bpi, bz = buf["planes"].numpy(), buf["pi"].numpy(), buf["z"].numpy()
            for _ in range(cfg.train_steps):
                idx = rng.integers(n, size=min(cfg.batch_size, n))
                losses = train_batch(net, opt, game, syms, bp[idx], bpi[idx], bz[idx], rng, run.device)
            run.log(gen, **losses, lr=lr, replay_positions=n, selfplay_s=selfplay_s,
                    selfplay_positions_per_s=len(zs) / max(selfplay_s, 1e-9), **stats)
            eval_s = 0.0
            if cfg.eval_every and (gen + 1) % cfg.eval_every == 0:
                te = time.time()
                row = evaluate(gen + 1, cfg.eval_games)
                eval_s = time.time() - te
                vs_random = {"win_rate_vs_random": row["win_rate_vs_random"]} if cfg.random_games else {}
                run.log(gen, win_rate=row["win_rate"], elo_vs_opponent=row["elo_vs_opponent"], **vs_random)
                run.print(f"gen {gen + 1}: win rate {row['win_rate']:.3f} vs {opponent_name} "
                          f"(elo {row['elo_vs_opponent']:+.0f}), vs random {row['win_rate_vs_random']}")
            now = time.time()
            state["wall_before"] = state.get("wall_before", 0.0) + now - t0
            state["last_gen_s"] = now - t0 - eval_s
            state["train_s"] += state["last_gen_s"]
            state["eval_s"] += eval_s
            t0 = now
    except BaseException:  # an error or ctrl-c: stop the self-play processes now
        if pool is not None:
            pool.terminate()
        raise
    if pool is not None:
        pool.close()
        pool.join()
    generations_done = run.step
    final = evaluate(generations_done, cfg.final_games, cfg.final_simulations)
    run.save_text("curve.json", json.dumps(curve, indent=1))
    save_curve_figure(run, curve, opponent_name)
    run.checkpoint()
    result = {"win_rate": final["win_rate"], "draw_rate": final["draw_rate"], "loss_rate": final["loss_rate"],
              "elo_vs_opponent": final["elo_vs_opponent"], "win_rate_vs_random": final["win_rate_vs_random"],
              "loss_rate_vs_random": final["loss_rate_vs_random"], "generations": generations_done,
              "final_games": cfg.final_games, "final_simulations": final["simulations"], "opponent": opponent_name,
              "selfplay_positions": run.state.get("positions", 0),
              "train_wall_s": round(state["train_s"], 1), "eval_wall_s": round(state["eval_s"], 1),
              "throughput": state.get("positions", 0) / max(state["train_s"], 1e-9)}
    return result


def save_curve_figure(run: Run, curve: list[dict], opponent: str) -> None:
    if len(curve) < 1:
        return
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    g = [r["generation"] for r in curve]
    ax[0].plot(g, [r["win_rate"] for r in curve], "o-", label=f"vs {opponent}")
    if curve[0]["win_rate_vs_random"] is not None:
        ax[0].plot(g, [r["win_rate_vs_random"] for r in curve], "s--", label="vs random")
    ax[0].set_ylim(-0.02, 1.02)
    ax[0].set_xlabel("generation")
    ax[0].set_ylabel("win rate (draw = 1/2)")
    ax[0].legend(fontsize=8)
    ax[1].plot(g, [r["elo_vs_opponent"] for r in curve], "o-")
    ax[1].axhline(0, color="gray", lw=0.8)
    ax[1].set_xlabel("generation")
    ax[1].set_ylabel(f"Elo gap vs {opponent}")
    fig.tight_layout()
    run.save_figure("elo_curve", fig)


def load_player(run_dir: Path, simulations: int | None = None, seed: int = 0):
    """Rebuild (game, MCTS player) from a run directory's config and latest checkpoint."""
    from safetensors.torch import load_file

    from ..engine.config import from_dict

    saved = json.loads((Path(run_dir) / "config.json").read_text())
    cfg = from_dict(AlphaZeroConfig, saved["config"])
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet (checkpoints/latest missing)")
    weights = load_file(str(Path(run_dir) / "checkpoints" / pointer.read_text().strip() / "weights.safetensors"))
    game = make_game(cfg.game)
    net = build_net(game, cfg.channels, cfg.blocks)
    net.load_state_dict({k[len("model/"):]: v for k, v in weights.items() if k.startswith("model/")})
    mcfg = MCTSConfig(simulations or cfg.eval_simulations, cfg.c_puct)
    return game, MCTSPlayer(NetEvaluator(net), mcfg, seed=seed)


# ---------------------------------------------------------------------- registered recipes
_SECTION = "AlphaGo: policy and value networks, self-play, tree search"


@recipe("alphazero-tictactoe", lecture=11, section=_SECTION, config=AlphaZeroConfig,
        presets={"full": {"game": "tictactoe", "channels": 32, "blocks": 2, "generations": 20,
                          "time_budget_s": 0.0, "games_per_generation": 64, "simulations": 50,
                          "dirichlet_alpha": 1.0, "temp_moves": 4, "window": 6, "train_steps": 60,
                          "batch_size": 128, "eval_every": 5, "eval_games": 20, "eval_simulations": 100,
                          "opponent": "minimax", "final_games": 100, "random_games": 50},
                 "quick": {"generations": 3, "games_per_generation": 16, "simulations": 16, "train_steps": 20,
                           "eval_every": 0, "final_games": 10, "random_games": 10, "eval_simulations": 25,
                           "channels": 16, "blocks": 1}},
        target=Target("loss_rate", "<=", 0.0, "issue #6: never loses to perfect minimax over 100 games"))
def alphazero_tictactoe(cfg: AlphaZeroConfig, run: Run) -> dict[str, float]:
    """AlphaZero self-play on tic-tac-toe, then 100 games against perfect (minimax) play."""
    return alphazero(cfg, run)


@recipe("alphazero-connect4", lecture=11, section=_SECTION, config=AlphaZeroConfig,
        presets={"full": {"game": "connect4", "lr_final": 0.1, "eval_every": 40, "random_games": 10,
                          "final_simulations": 800, "workers": 2},
                 "quick": {"generations": 2, "games_per_generation": 8, "simulations": 16, "train_steps": 10,
                           "batch_size": 64, "channels": 16, "blocks": 1, "eval_every": 0, "final_games": 4,
                           "random_games": 4, "eval_simulations": 16, "final_simulations": 0, "workers": 1,
                           "opponent_simulations": 100}},
        target=Target("win_rate", ">=", 0.9, "issue #6: vs pyspiel.MCTSBot (1000 sims, c=2) over 40 games"))
def alphazero_connect4(cfg: AlphaZeroConfig, run: Run) -> dict[str, float]:
    """AlphaZero on Connect Four; Elo-style curve per generation vs OpenSpiel's MCTS bot (1000 rollouts)."""
    return alphazero(cfg, run)


@recipe("alphazero-go9", lecture=11, section=_SECTION, config=AlphaZeroConfig,
        presets={"full": {"game": "go9", "channels": 64, "blocks": 4, "simulations": 64, "games_per_generation": 32,
                          "dirichlet_alpha": 0.1, "temp_moves": 20, "opponent_simulations": 400,
                          "lr_final": 0.1, "workers": 2, "eval_every": 15, "eval_games": 10, "random_games": 4,
                          "eval_simulations": 100},
                 "quick": {"generations": 1, "games_per_generation": 2, "simulations": 4, "train_steps": 4,
                           "batch_size": 64, "channels": 8, "blocks": 1, "eval_every": 0, "final_games": 2,
                           "random_games": 0, "eval_simulations": 4, "opponent": "random", "workers": 1}},
        target=None)
def alphazero_go9(cfg: AlphaZeroConfig, run: Run) -> dict[str, float]:
    """AlphaZero on 9x9 Go (captures, ko, superko, area scoring); win rate vs OpenSpiel MCTS (400 rollouts)."""
    return alphazero(cfg, run)
