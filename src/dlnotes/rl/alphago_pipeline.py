"""The AlphaGo pipeline of the notes, stage by stage (Lecture 11, "AlphaGo").

1. **Supervised policy network** ``p_sigma(a|s)``: a convnet trained to predict the expert's move
   on positions from expert games, ``max_sigma sum log p_sigma(a_expert | s)``. No human game
   records are at hand, so the expert is a strong search: perfect minimax for tic-tac-toe,
   OpenSpiel's MCTS bot (1000 random-rollout simulations) for Connect Four. The first
   ``expert_random_moves`` moves of each game are random so the games differ.
2. **Policy improved by self-play with REINFORCE** ``p_rho`` (initialised from ``p_sigma``): games
   against an opponent drawn from a pool of earlier snapshots, moves sampled from the policy,
   ``z = +-1`` at the end, and the log-derivative trick
   ``Delta rho ~ (1/n) sum_games sum_t z ∇_rho log p_rho(a_t | s_t)`` over the learner's moves.
3. **Value network** ``v_theta(s) ~ E[z | s]`` regressed (squared error) on positions from
   ``p_rho``-vs-``p_rho`` games, one position per game so training pairs are not correlated.
4. **MCTS guided by both** (:mod:`dlnotes.rl.mcts`): priors from ``p_sigma`` (as AlphaGo did: the
   broader SL policy searches better), leaf value
   ``V(s) = (1 - lambda) v_theta(s) + lambda z_rollout`` mixing the value network with one random
   playout; the move played is the most visited.

Each stage is scored by its win rate (draws count one half) against the same opponent.
AlphaZero (:mod:`dlnotes.rl.alphazero`) later merged all four stages into one self-play loop.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import Run, Target, recipe
from .alphazero import PolicyPlayer, build_net
from .arena import make_opponent, opponent_available, play_match
from .games import Game, GameState, make_game, random_playout
from .mcts import MCTSConfig, MCTSPlayer


@dataclass
class PipelineConfig:
    game: str = "connect4"  # tictactoe | connect4
    channels: int = 64  # conv channels (policy and value networks have the same tower)
    blocks: int = 4  # residual blocks
    expert: str = "openspiel-mcts"  # minimax (tic-tac-toe) | openspiel-mcts | mcts (our rollout MCTS)
    expert_simulations: int = 1000  # search budget of the expert
    expert_games: int = 400  # expert games for supervised learning
    expert_random_moves: int = 4  # random opening moves per expert game (diversity)
    sl_steps: int = 3000  # supervised minibatch updates
    batch_size: int = 256  # positions per update
    lr: float = 1e-3  # Adam learning rate (SL and value)
    rl_iterations: int = 100  # REINFORCE updates
    rl_games: int = 64  # self-play games per REINFORCE update
    rl_lr: float = 1e-4  # REINFORCE learning rate
    pool_every: int = 10  # iterations between snapshots added to the opponent pool
    value_games: int = 4000  # p_rho self-play games for the value network (one position each)
    value_steps: int = 2000  # value-network updates
    mcts_simulations: int = 200  # simulations per move of the final player
    mix_lambda: float = 0.0  # weight of a random rollout in the leaf value (AlphaGo used 0.5)
    opponent: str = "openspiel-mcts"  # minimax | openspiel-mcts | mcts | random
    opponent_simulations: int = 1000  # opponent search budget
    eval_games: int = 40  # games per stage evaluation


# ---------------------------------------------------------------------- stage 1: expert data + SL
def expert_games(game: Game, expert, n_games: int, random_moves: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Positions (N, C, H, W) and expert moves (N,) from games the expert plays against itself."""
    xs, ys = [], []
    for _ in range(n_games):
        s = game.initial()
        while not s.is_terminal():
            if len(s.history) < random_moves:
                legal = s.legal_moves()
                a = int(legal[int(rng.integers(len(legal)))])
            else:
                a = int(expert(s))
                xs.append(s.encode())
                ys.append(a)
            s = s.play(a)
    return np.stack(xs), np.array(ys)


def supervised_policy(net, game, xs, ys, steps, batch, lr, rng, run: Run, tag="sl") -> float:
    """Maximise log p_sigma(a_expert | s) with random symmetries; return the expert-move prediction
    accuracy on held-out positions (the last 10%, i.e. the last expert games)."""
    n_val = max(1, len(ys) // 10)
    xs, ys, va_x, va_y = xs[:-n_val], ys[:-n_val], xs[-n_val:], ys[-n_val:]
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    syms = game.symmetries()
    for step in range(steps):
        idx = rng.integers(len(ys), size=min(batch, len(ys)))
        onehot = np.eye(game.num_actions, dtype=np.float32)[ys[idx]]
        sym = syms[int(rng.integers(len(syms)))]
        x, target = game.transform(xs[idx], onehot, sym)
        net.train()
        logits, _ = net(torch.from_numpy(np.ascontiguousarray(x)))
        loss = F.cross_entropy(logits, torch.from_numpy(target.argmax(-1)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            run.log(step, **{f"{tag}_loss": loss.item()})
    net.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(va_x))[0].argmax(-1).numpy()
    return float((pred == va_y).mean())


# ---------------------------------------------------------------------- stage 2: REINFORCE self-play
def sample_move(net, states: list[GameState], rng, greedy=False):
    """Sample a_t ~ p(.|s_t) over legal moves for each state (one forward pass); also return log p(a_t|s_t)."""
    x = torch.from_numpy(np.stack([s.encode() for s in states]))
    logits, _ = net(x)  # (B, A)
    mask = torch.full_like(logits, float("-inf"))
    for i, s in enumerate(states):
        mask[i, s.legal_moves()] = 0.0
    logp = F.log_softmax(logits + mask, -1)
    if greedy:
        a = logp.argmax(-1)
    else:
        a = torch.multinomial(logp.detach().exp(), 1, generator=None).squeeze(-1)
    return a.tolist(), logp.gather(1, a[:, None]).squeeze(-1)


def reinforce_iteration(learner, opponent, game: Game, n_games: int, opt, rng) -> dict[str, float]:
    """One REINFORCE update from ``n_games`` learner-vs-opponent games (learner first in even games)."""
    states = [game.initial() for _ in range(n_games)]
    side = [i % 2 for i in range(n_games)]
    logps: list[list[torch.Tensor]] = [[] for _ in range(n_games)]
    learner.eval()  # act and differentiate with BatchNorm's running statistics: the policy is the one evaluated
    while True:
        live = [i for i in range(n_games) if not states[i].is_terminal()]
        if not live:
            break
        mine = [i for i in live if states[i].to_play == side[i]]
        theirs = [i for i in live if states[i].to_play != side[i]]
        if mine:
            acts, lp = sample_move(learner, [states[i] for i in mine], rng)
            for k, i in enumerate(mine):
                logps[i].append(lp[k])
                states[i] = states[i].play(acts[k])
        if theirs:
            with torch.no_grad():
                acts, _ = sample_move(opponent, [states[i] for i in theirs], rng)
            for k, i in enumerate(theirs):
                states[i] = states[i].play(acts[k])
    z = torch.tensor([states[i].returns()[side[i]] for i in range(n_games)])
    # log-derivative trick: ascend z * sum_t log p(a_t|s_t)
    loss = -torch.stack([z[i] * torch.stack(logps[i]).sum() for i in range(n_games)]).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"rl_loss": loss.item(), "rl_win_rate": float(((z > 0).float() + 0.5 * (z == 0).float()).mean())}


# ---------------------------------------------------------------------- stage 3: value network
@torch.no_grad()
def value_data(policy, game: Game, n_games: int, rng, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One random position per p_rho self-play game, labelled with the final z of its mover."""
    policy.eval()
    xs, zs = [], []
    for start in range(0, n_games, batch):
        n = min(batch, n_games - start)
        states = [game.initial() for _ in range(n)]
        trajectories: list[list[GameState]] = [[] for _ in range(n)]
        while True:
            live = [i for i in range(n) if not states[i].is_terminal()]
            if not live:
                break
            acts, _ = sample_move(policy, [states[i] for i in live], rng)
            for k, i in enumerate(live):
                trajectories[i].append(states[i])
                states[i] = states[i].play(acts[k])
        for i in range(n):
            s = trajectories[i][int(rng.integers(len(trajectories[i])))]
            xs.append(s.encode())
            zs.append(states[i].returns()[s.to_play])
    return np.stack(xs), np.array(zs, dtype=np.float32)


def train_value(net, game, xs, zs, steps, batch, lr, rng, run: Run) -> float:
    """Regress v_theta(s) on z; return the held-out squared error (last 10% of positions)."""
    n_val = max(1, len(zs) // 10)
    tr_x, tr_z, va_x, va_z = xs[:-n_val], zs[:-n_val], xs[-n_val:], zs[-n_val:]
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    syms = game.symmetries()
    dummy = np.zeros((batch, game.num_actions), dtype=np.float32)
    for step in range(steps):
        idx = rng.integers(len(tr_z), size=min(batch, len(tr_z)))
        x, _ = game.transform(tr_x[idx], dummy[:len(idx)], syms[int(rng.integers(len(syms)))])
        net.train()
        _, v = net(torch.from_numpy(np.ascontiguousarray(x)))
        loss = F.mse_loss(v, torch.from_numpy(tr_z[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            run.log(step, value_loss=loss.item())
    net.eval()
    with torch.no_grad():
        return float(F.mse_loss(net(torch.from_numpy(va_x))[1], torch.from_numpy(va_z)))


# ---------------------------------------------------------------------- stage 4: MCTS with both
class AlphaGoEvaluator:
    """Leaf evaluation for MCTS: priors p_sigma(.|s), value (1 - lambda) v_theta(s) + lambda z_rollout."""

    def __init__(self, policy_net, value_net, mix_lambda: float = 0.0, seed: int = 0):
        self.policy_net, self.value_net, self.lam = policy_net, value_net, mix_lambda
        self.rng = np.random.default_rng(seed)

    @torch.no_grad()
    def __call__(self, states):
        self.policy_net.eval()
        self.value_net.eval()
        x = torch.from_numpy(np.stack([s.encode() for s in states]))
        prior = torch.softmax(self.policy_net(x)[0], -1).numpy()
        v = self.value_net(x)[1].numpy().astype(np.float64)
        if self.lam > 0:
            z = np.array([random_playout(s, self.rng).value(s.to_play) for s in states])
            v = (1 - self.lam) * v + self.lam * z
        return prior, v


def alphago_pipeline(cfg: PipelineConfig, run: Run) -> dict[str, float]:
    game = make_game(cfg.game)
    rng = np.random.default_rng(0)
    opponent_name = opponent_available(cfg.opponent)
    expert_name = opponent_available(cfg.expert)

    def score(player, tag: str) -> float:
        res = play_match(player, make_opponent(opponent_name, game, cfg.opponent_simulations, seed=7), game,
                         cfg.eval_games)
        run.print(f"{tag}: win rate {res['win_rate']:.3f} vs {opponent_name} (loss rate {res['loss']:.3f})")
        return res

    # 1. supervised policy network on expert games
    expert = make_opponent(expert_name, game, cfg.expert_simulations, seed=1)
    xs, ys = expert_games(game, expert, cfg.expert_games, cfg.expert_random_moves, rng)
    run.print(f"{len(ys)} expert positions from {cfg.expert_games} {expert_name} games")
    sl_net = build_net(game, cfg.channels, cfg.blocks)
    sl_accuracy = supervised_policy(sl_net, game, xs, ys, cfg.sl_steps, cfg.batch_size, cfg.lr, rng, run)
    sl = score(PolicyPlayer(sl_net), "SL policy")

    # 2. REINFORCE self-play against a pool of earlier snapshots
    rl_net = copy.deepcopy(sl_net)
    pool = [copy.deepcopy(sl_net).eval()]
    opt = torch.optim.Adam(rl_net.parameters(), lr=cfg.rl_lr)
    for it in range(cfg.rl_iterations):
        opp = pool[int(rng.integers(len(pool)))]
        stats = reinforce_iteration(rl_net, opp, game, cfg.rl_games, opt, rng)
        run.log(cfg.sl_steps + it, **stats)
        if (it + 1) % cfg.pool_every == 0:
            pool.append(copy.deepcopy(rl_net).eval())
    rl = score(PolicyPlayer(rl_net), "RL policy")
    rl_vs_sl = play_match(PolicyPlayer(rl_net), PolicyPlayer(sl_net), game, 2)  # both greedy: 2 games decide
    rl_vs_sl_sampled = _sampled_match(rl_net, sl_net, game, 200, rng)

    # 3. value network on p_rho self-play positions
    vx, vz = value_data(rl_net, game, cfg.value_games, rng)
    value_net = build_net(game, cfg.channels, cfg.blocks)
    value_mse = train_value(value_net, game, vx, vz, cfg.value_steps, cfg.batch_size, cfg.lr, rng, run)

    # 4. MCTS guided by the SL policy (priors) and the value network (leaf values)
    player = MCTSPlayer(AlphaGoEvaluator(sl_net, value_net, cfg.mix_lambda), MCTSConfig(cfg.mcts_simulations))
    final = score(player, "MCTS (policy + value)")
    return {"win_rate": final["win_rate"], "loss_rate": final["loss"], "draw_rate": final["draw"],
            "sl_accuracy": sl_accuracy, "sl_win_rate": sl["win_rate"], "rl_win_rate": rl["win_rate"],
            "rl_vs_sl_win_rate": rl_vs_sl_sampled, "rl_vs_sl_greedy": rl_vs_sl["win_rate"],
            "value_mse": value_mse, "value_baseline_mse": float(np.mean((vz - vz.mean()) ** 2)),
            "expert_positions": len(ys), "opponent": opponent_name}


@torch.no_grad()
def _sampled_match(a_net, b_net, game, n_games, rng) -> float:
    """Win rate of policy a against policy b, both sampling their moves (as in REINFORCE)."""
    states = [game.initial() for _ in range(n_games)]
    side = [i % 2 for i in range(n_games)]
    while True:
        live = [i for i in range(n_games) if not states[i].is_terminal()]
        if not live:
            break
        for net, pick in ((a_net, lambda i: states[i].to_play == side[i]), (b_net, lambda i: states[i].to_play != side[i])):
            idx = [i for i in live if pick(i)]
            if idx:
                acts, _ = sample_move(net.eval(), [states[i] for i in idx], rng)
                for k, i in enumerate(idx):
                    states[i] = states[i].play(acts[k])
            live = [i for i in live if not states[i].is_terminal()]
    r = np.array([states[i].returns()[side[i]] for i in range(n_games)])
    return float((r > 0).mean() + 0.5 * (r == 0).mean())


_SECTION = "AlphaGo: supervised policy, REINFORCE self-play, value network, MCTS"


@recipe("alphago-pipeline-tictactoe", lecture=11, section=_SECTION, config=PipelineConfig,
        presets={"full": {"game": "tictactoe", "channels": 32, "blocks": 2, "expert": "minimax", "expert_games": 300,
                          "expert_random_moves": 2, "sl_steps": 1500, "rl_iterations": 100, "rl_games": 64,
                          "value_games": 3000, "value_steps": 1500, "mcts_simulations": 100, "mix_lambda": 0.0,
                          "opponent": "minimax", "eval_games": 100},
                 "quick": {"channels": 16, "blocks": 1, "expert_games": 60, "sl_steps": 150, "rl_iterations": 10,
                           "rl_games": 16, "value_games": 300, "value_steps": 150, "mcts_simulations": 25,
                           "mix_lambda": 0.5, "eval_games": 10, "batch_size": 64}},
        target=Target("loss_rate", "<=", 0.0, "perfect play draws: search with both networks never loses"))
def alphago_pipeline_tictactoe(cfg: PipelineConfig, run: Run) -> dict[str, float]:
    """AlphaGo's four stages on tic-tac-toe (minimax expert); each stage scored against perfect play."""
    return alphago_pipeline(cfg, run)


@recipe("alphago-pipeline-connect4", lecture=11, section=_SECTION, config=PipelineConfig,
        presets={"quick": {"channels": 16, "blocks": 1, "expert": "mcts", "expert_simulations": 50,
                           "expert_games": 6, "sl_steps": 30, "rl_iterations": 3, "rl_games": 8, "value_games": 40,
                           "value_steps": 30, "mcts_simulations": 16, "opponent": "random", "eval_games": 4,
                           "batch_size": 64}},
        target=None)
def alphago_pipeline_connect4(cfg: PipelineConfig, run: Run) -> dict[str, float]:
    """AlphaGo's four stages on Connect Four (OpenSpiel MCTS as expert and opponent); study, no target."""
    return alphago_pipeline(cfg, run)
