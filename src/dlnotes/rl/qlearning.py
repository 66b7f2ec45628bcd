"""Tabular Q-learning and value iteration on FrozenLake (Lecture 10, "Algorithms for Q-learning").

The Q-function ``Q(s, a) = E[G_t | s_t = s, a_t = a]`` is a table. The Bellman equation

    Q*(s, a) = E[ r(s, a) + gamma max_a' Q*(s', a') ]

gives both algorithms:

* **value iteration** (dynamic programming, needs the model ``P(s' | s, a)``): repeat
  ``Q <- sum_s' P(s'|s,a) [r + gamma (1 - terminal) max_a' Q(s', a')]`` until it stops changing;
* **Q-learning** (model-free, the notes' pseudocode): from each visited quadruple ``(s, a, r, s')``
  take one gradient step on the Bellman error ``l = 1/2 (r + gamma max_a' Q(s', a') - Q(s, a))^2``:
  ``Q(s, a) <- Q(s, a) + eta [r + gamma max_a' Q(s', a') - Q(s, a)]``, choosing ``a``
  epsilon-greedily (random with probability epsilon, else ``argmax_a Q(s, a)``).

Episodes are sampled from the environment's own transition table ``env.unwrapped.P`` (the same
distribution gymnasium samples from, without the wrapper overhead per step); the greedy policy is
scored on gymnasium's ``FrozenLake`` itself with its step limit (100 steps on 4x4, 200 on 8x8).
``success_within`` computes the exact success probability of a policy under that step limit, so
the optimum the targets are measured against comes from dynamic programming, not folklore.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from ..engine import Run, Target, recipe
from .envs import run_seed


def tables(env_id: str = "FrozenLake-v1", **kwargs):
    """``(P, R, terminal)``: P (S, A, S) transition probabilities, R (S, A, S) rewards, terminal (S,)."""
    env = gym.make(env_id, **kwargs).unwrapped
    S, A = env.observation_space.n, env.action_space.n
    P, R, term = np.zeros((S, A, S)), np.zeros((S, A, S)), np.zeros(S, dtype=bool)
    for s in range(S):
        for a in range(A):
            for p, s2, r, done in env.P[s][a]:
                P[s, a, s2] += p
                R[s, a, s2] = r
                term[s2] |= bool(done)
    return P, R, term


def value_iteration(P: np.ndarray, R: np.ndarray, terminal: np.ndarray, gamma: float,
                    tol: float = 1e-10, max_iters: int = 100_000) -> np.ndarray:
    """Optimal Q (S, A) from the Bellman optimality equation by fixed-point iteration."""
    Q = np.zeros(P.shape[:2])
    r = (P * R).sum(-1)  # expected immediate reward (S, A)
    for _ in range(max_iters):
        V = np.where(terminal, 0.0, Q.max(1))  # no value after the episode ends
        Q_new = r + gamma * P @ V
        if np.abs(Q_new - Q).max() < tol:
            return Q_new
        Q = Q_new
    return Q


def success_within(P: np.ndarray, R: np.ndarray, terminal: np.ndarray, policy: np.ndarray, horizon: int,
                   start: int = 0) -> float:
    """Exact probability that the deterministic ``policy`` (S,) collects the reward within ``horizon`` steps."""
    S = P.shape[0]
    Pp = P[np.arange(S), policy]  # (S, S)
    win = (Pp * (R[np.arange(S), policy] > 0)).sum(1)  # (S,) chance the next step reaches the goal
    V = np.zeros(S)
    for _ in range(horizon):
        V = win + (Pp * (~terminal)[None, :]) @ V
    return float(V[start])


def q_learning(P: np.ndarray, R: np.ndarray, terminal: np.ndarray, episodes: int, gamma: float, lr: float,
               eps_start: float, eps_end: float, eps_decay_frac: float, max_steps: int, seed: int,
               lr_end: float | None = None, Q: np.ndarray | None = None, start_episode: int = 0,
               on_episode=None) -> np.ndarray:
    """The notes' epsilon-greedy Q-learning, one episode after another, sampled from ``P``.

    epsilon (and optionally eta) decay linearly over the first ``eps_decay_frac`` of the episodes."""
    S, A = P.shape[:2]
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(P, -1)  # (S, A, S) for sampling s'
    Q = np.zeros((S, A)) if Q is None else Q
    lr_end = lr if lr_end is None else lr_end
    decay = max(1, int(eps_decay_frac * episodes))
    for ep in range(start_episode, episodes):
        frac = min(1.0, ep / decay)
        eps = eps_start + frac * (eps_end - eps_start)
        eta = lr + frac * (lr_end - lr)
        u = rng.random((max_steps, 3))  # explore?, random action, transition
        ties = rng.random((max_steps, A)) * 1e-12  # break ties between equal Q values at random
        s = 0
        for t in range(max_steps):
            a = int(u[t, 1] * A) if u[t, 0] < eps else int(np.argmax(Q[s] + ties[t]))
            s2 = min(int(np.searchsorted(cdf[s, a], u[t, 2], side="right")), S - 1)
            r = R[s, a, s2]
            target = r + (0.0 if terminal[s2] else gamma * Q[s2].max())
            Q[s, a] += eta * (target - Q[s, a])  # gradient step on 1/2 (target - Q(s,a))^2
            s = s2
            if terminal[s]:
                break
        if on_episode is not None:
            on_episode(ep, Q)
    return Q


def evaluate_table(policy: np.ndarray, episodes: int, seed: int, env_id: str = "FrozenLake-v1", **kwargs) -> float:
    """Success rate of a greedy table policy over ``episodes`` episodes of gymnasium's environment."""
    env = gym.make(env_id, **kwargs)
    wins = 0.0
    for i in range(episodes):
        s, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            s, r, term, trunc, _ = env.step(int(policy[s]))
            done = term or trunc
            wins += r
    return wins / episodes


@dataclass
class FrozenLakeConfig:
    map_name: str = "4x4"  # 4x4 (100-step limit) | 8x8 (FrozenLake8x8-v1, 200-step limit)
    slippery: bool = True  # the slippery (stochastic) lake of the notes
    episodes: int = 20_000  # training episodes
    gamma: float = 0.99  # discount (close to 1 so the safe long way round is preferred)
    lr: float = 0.1  # eta at the start
    lr_end: float = 0.01  # eta after the decay
    eps_start: float = 1.0  # epsilon at the start
    eps_end: float = 0.05  # epsilon after the decay
    eps_decay_frac: float = 0.8  # fraction of episodes over which epsilon and eta decay
    eval_episodes: int = 1000  # greedy-policy episodes in the final evaluation
    log_every: int = 1000  # episodes between logged success estimates (exact, by DP)


def train_frozenlake(cfg: FrozenLakeConfig, run: Run) -> dict[str, float]:
    env_id = "FrozenLake-v1" if cfg.map_name == "4x4" else "FrozenLake8x8-v1"
    horizon = gym.make(env_id).spec.max_episode_steps
    P, R, term = tables(env_id, is_slippery=cfg.slippery)
    Q_star = value_iteration(P, R, term, cfg.gamma)
    optimum = success_within(P, R, term, Q_star.argmax(1), horizon)
    curve = []

    def on_episode(ep, Q):
        if (ep + 1) % cfg.log_every == 0:
            p = success_within(P, R, term, Q.argmax(1), horizon)
            curve.append((ep + 1, p))
            run.log(ep + 1, success_exact=p, q_error=float(np.abs(Q - Q_star).max()))

    t0 = time.perf_counter()
    Q = q_learning(P, R, term, cfg.episodes, cfg.gamma, cfg.lr, cfg.eps_start, cfg.eps_end, cfg.eps_decay_frac,
                   horizon, run_seed(run), lr_end=cfg.lr_end, on_episode=on_episode)
    train_s = time.perf_counter() - t0
    policy = Q.argmax(1)
    success = evaluate_table(policy, cfg.eval_episodes, seed=10_000, env_id=env_id, is_slippery=cfg.slippery)
    run.save_text("q_table.txt", np.array2string(Q, precision=3) + "\n\nvalue iteration:\n"
                  + np.array2string(Q_star, precision=3))
    _plot(run, Q, Q_star, curve, optimum, cfg)
    return {"success_rate": success, "success_exact": success_within(P, R, term, policy, horizon),
            "optimal_success": optimum, "q_max_abs_error": float(np.abs(Q - Q_star).max()),
            "policy_agreement": float((policy == Q_star.argmax(1))[~term].mean()), "train_s": train_s,
            "episodes": cfg.episodes}


def _plot(run: Run, Q, Q_star, curve, optimum, cfg):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = int(np.sqrt(Q.shape[0]))
    fig, ax = plt.subplots(1, 3, figsize=(13, 4))
    for k, (M, title) in enumerate(((Q, "Q-learning max_a Q"), (Q_star, "value iteration max_a Q*"))):
        im = ax[k].imshow(M.max(1).reshape(n, n), cmap="viridis")
        arrows = np.array(["<", "v", ">", "^"])[M.argmax(1)].reshape(n, n)
        for i in range(n):
            for j in range(n):
                ax[k].text(j, i, arrows[i, j], ha="center", va="center", color="w")
        ax[k].set_title(title)
        fig.colorbar(im, ax=ax[k])
    if curve:
        e, p = zip(*curve)
        ax[2].plot(e, p, label="greedy policy of Q-learning")
    ax[2].axhline(optimum, color="k", ls="--", label="value iteration optimum")
    ax[2].set_xlabel("episode"), ax[2].set_ylabel("success probability"), ax[2].legend()
    fig.suptitle(f"FrozenLake {cfg.map_name}, slippery={cfg.slippery}")
    run.save_figure("q_vs_value_iteration", fig)


_QUICK = {"episodes": 3000, "eval_episodes": 200, "log_every": 500}


@recipe("frozenlake4x4-qlearning", lecture=10, section="Q-learning (tabular, epsilon-greedy)",
        config=FrozenLakeConfig, presets={"quick": _QUICK},
        target=Target("success_rate", ">=", 0.70, "issue #5; best policy within the 100-step limit: 0.744 (0.740 stationary, by DP)"))
def frozenlake4x4(cfg: FrozenLakeConfig, run: Run) -> dict[str, float]:
    """Tabular Q-learning on slippery FrozenLake 4x4 vs value iteration."""
    return train_frozenlake(cfg, run)


@recipe("frozenlake8x8-qlearning", lecture=10, section="Q-learning (tabular, epsilon-greedy)",
        config=FrozenLakeConfig,
        presets={"full": {"map_name": "8x8", "episodes": 40_000, "gamma": 0.999, "eps_decay_frac": 0.8},
                 "quick": _QUICK},
        target=Target("success_rate", ">=", 0.85, "issue #5; best policy within the 200-step limit: 0.913 (0.894 stationary, by DP)"))
def frozenlake8x8(cfg: FrozenLakeConfig, run: Run) -> dict[str, float]:
    """Tabular Q-learning on slippery FrozenLake 8x8 vs value iteration."""
    return train_frozenlake(cfg, run)
