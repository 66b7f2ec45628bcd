"""Environments, rollouts, returns and evaluation shared by the Lecture 9-10 methods.

A rollout (trajectory) is ``tau = (s_0, a_0, s_1, a_1, ..., s_L)`` with rewards ``r_t = r(s_t, a_t)``.
The notes' two ways to sum rewards:

* the (discounted) return of the whole trajectory, ``R(tau) = sum_{t=0}^{L-1} gamma^t r_t``;
* the reward-to-go (discounted return from step t), ``G_t = r_t + gamma r_{t+1} + ... =
  r_t + gamma (1 - d_t) G_{t+1}`` where ``d_t`` marks the last step of an episode, so actions are
  reinforced only by the rewards that come after them.

Vectorized environments all speak one small interface (``VecEnv``): ``reset(seed) -> obs (N, D)``
and ``step(actions) -> (obs, reward, terminated, truncated, final_obs)`` with *same-step*
auto-reset: when env ``i`` ends, ``obs[i]`` is already the first observation of its next episode
and ``final_obs[i]`` is the observation the episode ended in (needed to bootstrap a time-limit
truncation). :class:`GymVec` wraps any gymnasium environment (``SyncVectorEnv``);
:class:`CartPoleVec` is CartPole-v1's dynamics (Barto, Sutton and Anderson 1983, exactly as
gymnasium writes them) batched in numpy, one array operation per step for all ``N`` carts, which
is what makes population methods, the DQN and actor-critic fast; :class:`AcrobotVec` and
:class:`PendulumVec` do the same for Acrobot-v1 (Sutton 1996; RK4 integration) and Pendulum-v1. Tests check both against gymnasium step by
step. Evaluation always uses gymnasium's own environment with fixed seeds.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import gymnasium as gym
import numpy as np


# ---------------------------------------------------------------------------- returns
def reward_to_go(rewards: np.ndarray, dones: np.ndarray, gamma: float,
                 last_value: np.ndarray | None = None) -> np.ndarray:
    """``G_t = r_t + gamma (1 - d_t) G_{t+1}`` over a (T, N) block; ``last_value`` bootstraps G_T."""
    T = rewards.shape[0]
    out = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[1:]) if last_value is None else np.asarray(last_value, np.float64)
    for t in range(T - 1, -1, -1):
        running = rewards[t] + gamma * (1.0 - dones[t]) * running
        out[t] = running
    return out


def discounted_return(rewards: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """``R(tau) = sum_t gamma^t r_t`` of each column's (first) episode; ``mask`` (T, N) marks its steps."""
    disc = gamma ** np.arange(rewards.shape[0])[:, None]  # (T, 1)
    return (disc * rewards * mask).sum(0)  # (N,)


# ---------------------------------------------------------------------------- vector envs
class CartPoleVec:
    """``N`` CartPole-v1 systems stepped together in numpy (Euler integration, 500-step limit)."""

    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masspole + masscart
    polemass_length = masspole * length
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    obs_dim, n_actions, max_steps = 4, 2, 500

    def __init__(self, num_envs: int, seed: int = 0):
        self.num_envs = num_envs
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros((num_envs, 4))
        self.t = np.zeros(num_envs, dtype=np.int64)

    def _start(self, n: int) -> np.ndarray:
        return self.rng.uniform(-0.05, 0.05, size=(n, 4))

    def reset(self, seed: int | None = None, states: np.ndarray | None = None) -> np.ndarray:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.state = self._start(self.num_envs) if states is None else np.array(states, np.float64)
        self.t[:] = 0
        return self.observe(self.state)

    def snapshot(self) -> dict:
        """Everything needed to continue exactly where the envs are (tensors: checkpoint-safe)."""
        import torch
        return {"state": torch.from_numpy(self.state.copy()), "t": torch.from_numpy(self.t.copy()),
                "rng": self.rng.bit_generator.state}

    def load_snapshot(self, snap: dict) -> np.ndarray:
        self.state, self.t = snap["state"].numpy().astype(np.float64), snap["t"].numpy().astype(np.int64)
        self.rng.bit_generator.state = snap["rng"]
        return self.observe(self.state)

    @staticmethod
    def observe(state: np.ndarray) -> np.ndarray:
        return state.astype(np.float32)

    def dynamics(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        x, x_dot, theta, theta_dot = state.T
        force = np.where(actions == 1, self.force_mag, -self.force_mag)
        cos, sin = np.cos(theta), np.sin(theta)
        temp = (force + self.polemass_length * theta_dot ** 2 * sin) / self.total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos ** 2 / self.total_mass))
        x_acc = temp - self.polemass_length * theta_acc * cos / self.total_mass
        return np.stack([x + self.tau * x_dot, x_dot + self.tau * x_acc,
                         theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc], 1)

    def step(self, actions: np.ndarray):
        self.state = self.dynamics(self.state, np.asarray(actions))
        self.t += 1
        x, theta = self.state[:, 0], self.state[:, 2]
        terminated = (np.abs(x) > self.x_threshold) | (np.abs(theta) > self.theta_threshold)
        truncated = (self.t >= self.max_steps) & ~terminated
        final_obs = self.state.astype(np.float32)
        done = terminated | truncated
        if done.any():
            self.state[done] = self._start(int(done.sum()))
            self.t[done] = 0
        return self.state.astype(np.float32), np.ones(self.num_envs), terminated, truncated, final_obs


class AcrobotVec(CartPoleVec):
    """``N`` Acrobot-v1 systems stepped together in numpy: gymnasium's "book" dynamics, one RK4 step of
    ``dt = 0.2`` per action, angles wrapped to [-pi, pi], velocities clipped, reward -1 until the tip
    rises one link length above the pivot, 500-step limit. A test checks it against gymnasium."""

    m1 = m2 = l1 = 1.0
    lc1 = lc2 = 0.5
    I1 = I2 = 1.0
    g, dt = 9.8, 0.2
    max_vel1, max_vel2 = 4 * math.pi, 9 * math.pi
    obs_dim, n_actions, max_steps = 6, 3, 500

    def _start(self, n: int) -> np.ndarray:
        return self.rng.uniform(-0.1, 0.1, size=(n, 4)).astype(np.float32).astype(np.float64)

    @staticmethod
    def observe(s: np.ndarray) -> np.ndarray:
        return np.stack([np.cos(s[:, 0]), np.sin(s[:, 0]), np.cos(s[:, 1]), np.sin(s[:, 1]), s[:, 2], s[:, 3]],
                        1).astype(np.float32)

    def dsdt(self, s: np.ndarray, torque: np.ndarray) -> np.ndarray:
        m1, m2, l1, lc1, lc2, I1, I2, g = self.m1, self.m2, self.l1, self.lc1, self.lc2, self.I1, self.I2, self.g
        th1, th2, dth1, dth2 = s.T
        d1 = m1 * lc1 ** 2 + m2 * (l1 ** 2 + lc2 ** 2 + 2 * l1 * lc2 * np.cos(th2)) + I1 + I2
        d2 = m2 * (lc2 ** 2 + l1 * lc2 * np.cos(th2)) + I2
        phi2 = m2 * lc2 * g * np.cos(th1 + th2 - math.pi / 2)
        phi1 = (-m2 * l1 * lc2 * dth2 ** 2 * np.sin(th2) - 2 * m2 * l1 * lc2 * dth2 * dth1 * np.sin(th2)
                + (m1 * lc1 + m2 * l1) * g * np.cos(th1 - math.pi / 2) + phi2)
        ddth2 = ((torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dth1 ** 2 * np.sin(th2) - phi2)
                 / (m2 * lc2 ** 2 + I2 - d2 ** 2 / d1))
        ddth1 = -(d2 * ddth2 + phi1) / d1
        return np.stack([dth1, dth2, ddth1, ddth2], 1)

    @staticmethod
    def _wrap(x: np.ndarray) -> np.ndarray:
        two_pi = 2 * math.pi
        x = np.where(x > math.pi, x - two_pi * np.ceil((x - math.pi) / two_pi), x)
        return np.where(x < -math.pi, x + two_pi * np.ceil((-math.pi - x) / two_pi), x)

    def step(self, actions: np.ndarray):
        torque = np.asarray(actions, np.float64) - 1.0  # actions 0, 1, 2 -> torque -1, 0, +1
        s, h = self.state, self.dt
        k1 = self.dsdt(s, torque)
        k2 = self.dsdt(s + h / 2 * k1, torque)
        k3 = self.dsdt(s + h / 2 * k2, torque)
        k4 = self.dsdt(s + h * k3, torque)
        s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        s[:, 0], s[:, 1] = self._wrap(s[:, 0]), self._wrap(s[:, 1])
        s[:, 2] = np.clip(s[:, 2], -self.max_vel1, self.max_vel1)
        s[:, 3] = np.clip(s[:, 3], -self.max_vel2, self.max_vel2)
        self.state = s
        self.t += 1
        terminated = -np.cos(s[:, 0]) - np.cos(s[:, 1] + s[:, 0]) > 1.0
        truncated = (self.t >= self.max_steps) & ~terminated
        reward = np.where(terminated, 0.0, -1.0)
        final_obs = self.observe(s)
        done = terminated | truncated
        if done.any():
            self.state[done] = self._start(int(done.sum()))
            self.t[done] = 0
        return self.observe(self.state), reward, terminated, truncated, final_obs


class PendulumVec(CartPoleVec):
    """``N`` Pendulum-v1 systems in numpy (gymnasium's dynamics: g = 10, dt = 0.05, torque clipped to
    [-2, 2], speed to [-8, 8]; reward ``-(angle^2 + 0.1 speed^2 + 0.001 torque^2)``; 200-step limit)."""

    g, m, l, dt, max_speed, max_torque = 10.0, 1.0, 1.0, 0.05, 8.0, 2.0
    obs_dim, n_actions, act_dim, max_steps = 3, None, 1, 200
    action_low, action_high = np.array([-2.0], np.float32), np.array([2.0], np.float32)

    def _start(self, n: int) -> np.ndarray:
        return self.rng.uniform([-math.pi, -1.0], [math.pi, 1.0], size=(n, 2))

    @staticmethod
    def observe(s: np.ndarray) -> np.ndarray:
        return np.stack([np.cos(s[:, 0]), np.sin(s[:, 0]), s[:, 1]], 1).astype(np.float32)

    def step(self, actions: np.ndarray):
        u = np.clip(np.asarray(actions, np.float64).reshape(self.num_envs, -1)[:, 0], -self.max_torque,
                    self.max_torque)
        th, thdot = self.state[:, 0], self.state[:, 1]
        angle = (th + math.pi) % (2 * math.pi) - math.pi
        reward = -(angle ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2)
        thdot = np.clip(thdot + (3 * self.g / (2 * self.l) * np.sin(th) + 3.0 / (self.m * self.l ** 2) * u) * self.dt,
                        -self.max_speed, self.max_speed)
        self.state = np.stack([th + thdot * self.dt, thdot], 1)
        self.t += 1
        truncated = self.t >= self.max_steps
        terminated = np.zeros(self.num_envs, dtype=bool)
        final_obs = self.observe(self.state)
        if truncated.any():
            self.state[truncated] = self._start(int(truncated.sum()))
            self.t[truncated] = 0
        return self.observe(self.state), reward, terminated, truncated, final_obs


class GymVec:
    """gymnasium's ``SyncVectorEnv`` with same-step auto-reset, behind the :class:`CartPoleVec` interface."""

    def __init__(self, env_id: str, num_envs: int, seed: int = 0, **kwargs):
        self.env = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)],
                                            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.num_envs, self.seed = num_envs, seed
        space = self.env.single_observation_space
        self.obs_dim = int(np.prod(space.shape)) if space.shape else int(space.n)
        act = self.env.single_action_space
        self.n_actions = int(act.n) if hasattr(act, "n") else None
        self.act_dim = None if hasattr(act, "n") else int(np.prod(act.shape))
        self.action_low = getattr(act, "low", None)
        self.action_high = getattr(act, "high", None)

    def reset(self, seed: int | list | None = None) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed if seed is None else seed)
        return obs.astype(np.float32)

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        final_obs = obs.astype(np.float32).copy()
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                final_obs[i] = info["final_obs"][i]
        return obs.astype(np.float32), reward.astype(np.float64), terminated, truncated, final_obs

    def close(self):
        self.env.close()


FAST_ENVS = {"CartPole-v1": CartPoleVec, "Acrobot-v1": AcrobotVec, "Pendulum-v1": PendulumVec}


def make_vec(env_id: str, num_envs: int, seed: int = 0, fast: bool = True):
    """Our batched numpy CartPole / Acrobot when ``fast`` and ``env_id`` is one of them, else gymnasium's."""
    if fast and env_id in FAST_ENVS:
        return FAST_ENVS[env_id](num_envs, seed)
    return GymVec(env_id, num_envs, seed)


# ---------------------------------------------------------------------------- rollouts
def collect_episodes(env, act: Callable[[np.ndarray], np.ndarray], seed: int, max_steps: int = 10_000) -> dict:
    """Run every env of ``env`` through one whole episode from ``reset(seed)``.

    Returns (T, N) arrays ``rewards``, ``mask`` (1 while the env is still in its first episode),
    ``dones`` (1 on its last step), the (T, N, ...) ``obs`` and ``actions``, and ``steps`` (the
    number of real env steps, i.e. ``mask.sum()``)."""
    obs = env.reset(seed)
    alive = np.ones(env.num_envs, dtype=bool)
    O, A, R, M, D = [], [], [], [], []
    for _ in range(max_steps):
        a = act(obs)
        nxt, r, term, trunc, _ = env.step(a)
        done = term | trunc
        O.append(obs), A.append(a), R.append(r * alive), M.append(alive.copy()), D.append(done & alive)
        alive &= ~done
        obs = nxt
        if not alive.any():
            break
    mask = np.array(M, dtype=np.float64)
    return {"obs": np.array(O), "actions": np.array(A), "rewards": np.array(R, dtype=np.float64),
            "mask": mask, "dones": np.array(D, dtype=np.float64), "steps": int(mask.sum())}


def population_rollouts(act: Callable[[np.ndarray], np.ndarray], members: int, episodes: int, seed: int,
                        env_id: str = "CartPole-v1", fast: bool = True, max_steps: int = 10_000) -> dict:
    """One episode per (member, k) for ``members`` policies side by side in one vector env.

    ``act(obs (members, episodes, D)) -> actions (members, episodes[, A])``. Every member meets the
    same ``episodes`` start states (common random numbers, so differences in return come from the
    policies). Returns mean ``returns`` (members,), env ``steps``, and the sum, squared sum and
    count of the observations visited (for ARS's state normalisation)."""
    n = members * episodes
    env = make_vec(env_id, n, seed, fast)
    if isinstance(env, CartPoleVec):  # (or AcrobotVec) the same start states for every member
        env.rng = np.random.default_rng(seed)
        obs = env.reset(states=np.tile(env._start(episodes), (members, 1)))
    else:
        obs = env.reset([seed + k for _ in range(members) for k in range(episodes)])
    alive = np.ones(n, dtype=bool)
    ret = np.zeros(n)
    s1, s2, count = np.zeros(obs.shape[1]), np.zeros(obs.shape[1]), 0
    for _ in range(max_steps):
        live = obs[alive].astype(np.float64)
        s1 += live.sum(0); s2 += (live ** 2).sum(0); count += len(live)  # noqa: E702
        a = np.asarray(act(obs.reshape(members, episodes, -1)))
        obs, r, term, trunc, _ = env.step(a.reshape(n, *a.shape[2:]))
        ret += r * alive
        alive &= ~(term | trunc)
        if not alive.any():
            break
    if hasattr(env, "close"):
        env.close()
    return {"returns": ret.reshape(members, episodes).mean(1), "steps": count, "obs_sum": s1,
            "obs_sqsum": s2, "obs_count": count}


def evaluate(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int = 100, seed: int = 10_000,
             num_envs: int = 20, **env_kwargs) -> tuple[float, float]:
    """Mean and std of the undiscounted return over ``episodes`` episodes of gymnasium's ``env_id``.

    ``num_envs`` environments run side by side, seeded ``seed, seed+1, ...``; each contributes its
    first ``episodes / num_envs`` episodes (counting a fixed number per env avoids favouring the
    short episodes that finish first)."""
    num_envs = min(num_envs, episodes)
    per_env = math.ceil(episodes / num_envs)
    env = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **env_kwargs) for _ in range(num_envs)],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = env.reset(seed=[seed + i for i in range(num_envs)])
    ret = np.zeros(num_envs)
    done_count = np.zeros(num_envs, dtype=np.int64)
    returns: list[float] = []
    while (done_count < per_env).any():
        obs, r, term, trunc, _ = env.step(act(obs.astype(np.float32)))
        counting = done_count < per_env
        ret += r * counting
        for i in np.flatnonzero((term | trunc) & counting):
            returns.append(ret[i])
            ret[i] = 0.0
            done_count[i] += 1
    env.close()
    return float(np.mean(returns)), float(np.std(returns))


def timed_eval(run, st: dict, log_step: int, eval_fn: Callable[[], float], stop_return: float) -> bool:
    """A periodic greedy evaluation during training: its seconds count as training time (as in SB3's
    ``EvalCallback``), it is logged, and the first one reaching ``stop_return`` (when non-zero) records
    ``steps_to_target`` and ``seconds_to_target`` in the run state ``st``. Returns True then."""
    t1 = time.perf_counter()
    ev = eval_fn()
    st["train_s"] += time.perf_counter() - t1
    run.log(log_step, eval_return=ev, env_steps=st["env_steps"])
    if stop_return and ev >= stop_return and "steps_to_target" not in st:
        st["steps_to_target"], st["seconds_to_target"] = st["env_steps"], st["train_s"]
        return True
    return False


def training_result(st: dict, final: tuple[float, float], **extra) -> dict[str, float]:
    """The result every RL trainer returns: final evaluation, env steps, time to target, throughput."""
    return {"eval_return": final[0], "eval_return_std": final[1], "env_steps": st["env_steps"],
            "train_s": st["train_s"], "steps_to_target": st.get("steps_to_target", -1),
            "seconds_to_target": st.get("seconds_to_target", -1),
            "throughput": st["env_steps"] / max(st["train_s"], 1e-9), **extra}


def run_seed(run) -> int:
    """The ``--seed`` of a run (``execute`` passes the saved one on ``--resume``)."""
    return run.seed


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch threads. The RL networks are tiny: one thread is fastest, and on a
    busy machine a second thread waiting at every barrier made REINFORCE 60x slower (measured)."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
