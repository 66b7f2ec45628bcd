"""Atari environments for the Nature DQN (Lecture 10's "cracking 80's-style Atari games").

The standard preprocessing of Mnih et al. (2015), as the Arcade Learning Environment's own C++
vector environment (``ale_py.vector_env.AtariVectorEnv``) implements it: up to 30 no-op actions at
reset, the same action repeated for 4 frames with the last two max-pooled (flicker), grey
84x84 frames, the last 4 stacked as the observation, FIRE pressed at reset in games that need it,
and, for training only, rewards clipped to their sign and the loss of a life treated as the end
of an episode. Evaluation plays whole games with raw scores and epsilon = 0.05 (Nature's
protocol). Observations are (N, 4, 84, 84) uint8, newest frame last.

Budget of the full ``pong-dqn`` recipe (zoo settings: 10M agent steps = 40M frames, one
update of batch 32 every 4 steps = 2.5M updates, 100k replay): on one modern GPU about 3-5 hours
(ALE runs about 2-3k agent steps/s per core with preprocessing; a Nature-net update is about 1 ms
on an H100 and 20-40 ms on this 2-core CPU, where the full run would take weeks). Pong usually
passes +18 after 2-4M steps, so ``--set total_steps=4000000`` (about 1.5 GPU-hours) is enough there.
"""
from __future__ import annotations

import re

import numpy as np


def game_name(env_id: str) -> str:
    """``ALE/SpaceInvaders-v5`` -> ``space_invaders`` (the ROM name)."""
    base = env_id.split("/")[-1].split("-")[0]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()


class AtariVec:
    """ALE's vector env with same-step auto-reset behind the :class:`~dlnotes.rl.envs.CartPoleVec` interface."""

    def __init__(self, env_id: str, num_envs: int, seed: int = 0, train: bool = True, threads: int = 1):
        from ale_py.vector_env import AtariVectorEnv

        self.env = AtariVectorEnv(game_name(env_id), num_envs, num_threads=threads, autoreset_mode="SameStep",
                                  episodic_life=train, reward_clipping=train, repeat_action_probability=0.0)
        self.num_envs, self.seed = num_envs, seed
        self.obs_shape = self.env.single_observation_space.shape  # (4, 84, 84)
        self.obs_dim, self.n_actions = None, int(self.env.single_action_space.n)

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed if seed is None else seed)
        return obs

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions, dtype=np.int64))
        done = terminated | truncated
        final_obs = obs.copy()
        if done.any():
            final_obs[done] = info["final_obs"][done]
        return obs, reward.astype(np.float64), terminated, truncated, final_obs

    def close(self):
        self.env.close()


def make_atari_vec(env_id: str, num_envs: int, seed: int = 0) -> AtariVec:
    return AtariVec(env_id, num_envs, seed, train=True)


def evaluate_atari(greedy, env_id: str, episodes: int, seed: int, eps: float = 0.05, num_envs: int = 4,
                   max_steps: int = 27_000) -> tuple[float, float]:
    """Mean and std of raw game scores over ``episodes`` whole games, epsilon-greedy with ``eps``."""
    num_envs = min(num_envs, episodes)
    per_env = -(-episodes // num_envs)
    env = AtariVec(env_id, num_envs, seed, train=False)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed)
    ret, count, scores = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64), []
    for _ in range(max_steps * per_env):
        a = greedy(obs)
        rand = rng.random(num_envs) < eps
        a = np.where(rand, rng.integers(env.n_actions, size=num_envs), a)
        obs, r, term, trunc, _ = env.step(a)
        counting = count < per_env
        ret += r * counting
        for i in np.flatnonzero((term | trunc) & counting):
            scores.append(ret[i])
            ret[i], count[i] = 0.0, count[i] + 1
        if (count >= per_env).all():
            break
    env.close()
    if not scores:  # nothing finished within max_steps: report the partial score
        scores = list(ret)
    return float(np.mean(scores)), float(np.std(scores))
