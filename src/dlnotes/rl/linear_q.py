"""Q-learning with linear function approximation and tile coding on MountainCar (Lecture 10).

When the state is continuous the Q-table is replaced by ``Q(s, a) = w^T psi(s, a)``. The feature
map ``psi`` here is tile coding (Sutton and Barto, ch. 9.5): ``n`` overlapping grids ("tilings")
over (position, velocity), each shifted by a fraction of a tile along the asymmetric direction
(1, 3); ``psi(s, a)`` is a binary vector with exactly one active tile per tiling, in the block of
action ``a``. The Bellman error's gradient step becomes

    w <- w + eta [ r + gamma max_a' w^T psi(s', a') - w^T psi(s, a) ] psi(s, a),

which touches only the ``n`` active weights; ``eta = alpha / n``. Weights start at zero, which is
optimistic (every reward is -1), so a greedy policy (epsilon = 0) explores on its own. A
time-limit truncation (200 steps) bootstraps from ``s'``; reaching the flag does not.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from ..engine import Run, Target, recipe
from .envs import evaluate, run_seed


class TileCoder:
    """``n_tilings`` grids of ``tiles x tiles`` over a box ``[low, high]``, offsets along (1, 3)."""

    def __init__(self, low, high, n_tilings: int = 8, tiles: int = 8):
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.n, self.tiles = n_tilings, tiles
        self.side = tiles + 1  # one extra tile per dimension so shifted grids still cover the box
        disp = np.array([1.0, 3.0])
        self.offsets = (np.arange(n_tilings)[:, None] * disp[None, :] / n_tilings) % 1.0  # (n, 2) in tiles
        self.size = n_tilings * self.side ** 2

    def active(self, s: np.ndarray) -> np.ndarray:
        """Indices (..., n) of the active tile in each tiling for states ``s`` (..., 2)."""
        z = (np.asarray(s, np.float64) - self.low) / (self.high - self.low) * self.tiles  # (..., 2)
        ij = np.floor(z[..., None, :] + self.offsets).astype(np.int64)  # (..., n, 2)
        ij = np.clip(ij, 0, self.side - 1)
        return np.arange(self.n) * self.side ** 2 + ij[..., 0] * self.side + ij[..., 1]


class LinearQ:
    """``Q(s, a) = w^T psi(s, a)`` with ``w`` stored as (A, features)."""

    def __init__(self, coder: TileCoder, n_actions: int):
        self.coder, self.w = coder, np.zeros((n_actions, coder.size))

    def values(self, s: np.ndarray) -> np.ndarray:
        """Q(s, .) for states (..., 2) -> (..., A)."""
        idx = self.coder.active(s)  # (..., n)
        return np.moveaxis(self.w[:, idx].sum(-1), 0, -1)

    def update(self, s, a: int, target: float, eta: float) -> float:
        idx = self.coder.active(s)
        delta = target - self.w[a, idx].sum()
        self.w[a, idx] += eta * delta  # psi(s, a) is 1 exactly on idx
        return delta


@dataclass
class MountainCarConfig:
    episodes: int = 500  # training episodes
    n_tilings: int = 8  # overlapping tilings
    tiles: int = 8  # tiles per dimension per tiling
    alpha: float = 0.5  # step size per active set (eta = alpha / n_tilings)
    gamma: float = 1.0  # discount (episodic task)
    epsilon: float = 0.0  # exploration (0: rely on the optimistic zero weights)
    eval_every: int = 50  # episodes between greedy evaluations
    eval_episodes: int = 100  # episodes in the final greedy evaluation


def train_mountaincar(cfg: MountainCarConfig, run: Run) -> dict[str, float]:
    env = gym.make("MountainCar-v0")
    seed = run_seed(run)
    rng = np.random.default_rng(seed)
    coder = TileCoder(env.observation_space.low, env.observation_space.high, cfg.n_tilings, cfg.tiles)
    q = LinearQ(coder, env.action_space.n)
    eta = cfg.alpha / cfg.n_tilings
    greedy = lambda obs: q.values(obs).argmax(-1)  # noqa: E731
    steps, t0, lengths = 0, time.perf_counter(), []
    for ep in range(cfg.episodes):
        s, _ = env.reset(seed=seed * 100_003 + ep)
        done, length = False, 0
        u = rng.random((env.spec.max_episode_steps + 1, 5))  # explore?, random action, tie-breaking noise
        qs = q.values(s)
        while not done:
            a = int(u[length, 1] * 3) if u[length, 0] < cfg.epsilon else int(np.argmax(qs + 1e-12 * u[length, 2:]))
            s2, r, term, trunc, _ = env.step(a)
            qs2 = q.values(s2)
            target = r + (0.0 if term else cfg.gamma * qs2.max())
            q.update(s, a, target, eta)
            s, qs, done, length = s2, qs2, term or trunc, length + 1
        steps += length
        lengths.append(length)
        run.log(ep, episode_length=length, train_return=-length)
        if (ep + 1) % cfg.eval_every == 0 and ep + 1 < cfg.episodes:
            m, _ = evaluate(greedy, "MountainCar-v0", 10, seed=50_000 + ep, num_envs=10)
            run.log(ep + 1, eval_return=m)
    train_s = time.perf_counter() - t0
    final, std = evaluate(greedy, "MountainCar-v0", cfg.eval_episodes, seed=10_000)
    _plot(run, q, lengths)
    return {"eval_return": final, "eval_return_std": std, "env_steps": steps, "train_s": train_s,
            "throughput": steps / train_s}


def _plot(run: Run, q: LinearQ, lengths):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pos, vel = np.meshgrid(np.linspace(-1.2, 0.6, 60), np.linspace(-0.07, 0.07, 60))
    cost = -q.values(np.stack([pos, vel], -1)).max(-1)  # (60, 60) cost-to-go
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    im = ax[0].imshow(cost, origin="lower", extent=[-1.2, 0.6, -0.07, 0.07], aspect="auto")
    ax[0].set_xlabel("position"), ax[0].set_ylabel("velocity"), ax[0].set_title("-max_a Q(s, a)")
    fig.colorbar(im, ax=ax[0])
    ax[1].plot(lengths), ax[1].set_xlabel("episode"), ax[1].set_ylabel("steps to the flag (200 = time limit)")
    run.save_figure("mountaincar_cost_to_go", fig)


@recipe("mountaincar-linear-q", lecture=10, section="Q-learning with linear function approximation (tile coding)",
        config=MountainCarConfig, presets={"quick": {"episodes": 40, "eval_every": 20, "eval_episodes": 10}},
        target=Target("eval_return", ">=", -150, "issue #5; Sutton and Barto fig. 10.1-10.2"))
def mountaincar_linear_q(cfg: MountainCarConfig, run: Run) -> dict[str, float]:
    """Linear Q-learning with 8x8x8 tile coding on MountainCar-v0 (greedy, optimistic init)."""
    return train_mountaincar(cfg, run)
