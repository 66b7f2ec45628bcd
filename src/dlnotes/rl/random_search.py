"""Derivative-free policy search: the notes' random search and Augmented Random Search (Lecture 9).

Both search over *deterministic linear* policies ``a = argmax_a (M s)_a`` (discrete actions) or
``a = M s`` (continuous), and only ever evaluate returns ``R(M)``: no gradients, no backprop.

**Random search with a line search** (the notes' "Connection to random search"):

    repeat: v ~ N(0, I), v <- v / ||v||
            eta* = argmax_{eta in {0, +-c 2^k}} R(M + eta v)      (step size of either sign)
            M <- M + eta* v

The line search evaluates every candidate step on the same start states in one batched rollout;
``eta = 0`` is a candidate, so a step is only taken when it helps on the sampled episodes.

**ARS V2-t** (Mania, Guy and Recht 2018): ``N`` directions ``delta_k``, returns
``r_k^{+-} = R(M +- nu delta_k)`` on states normalised by running statistics
``(s - mu) / sigma``; keep the ``b`` directions with the largest ``max(r_k^+, r_k^-)`` and step

    M <- M + alpha / (b sigma_R) sum_{k in top b} (r_k^+ - r_k^-) delta_k,

``sigma_R`` the standard deviation of the ``2b`` returns used.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..engine import Run, Target, recipe
from .envs import evaluate, make_vec, population_rollouts, run_seed


def linear_act(M: np.ndarray, discrete: bool, mean=None, std=None, low=None, high=None):
    """Batched linear policy: ``M`` (P, A, D) for P members, obs (P, E, D) -> actions (P, E[, A])."""
    def act(obs):
        x = obs if mean is None else (obs - mean) / std
        y = np.einsum("pad,ped->pea", M, x)  # (P, E, A)
        return y.argmax(-1) if discrete else np.clip(y, low, high)
    return act


@dataclass
class SearchConfig:
    method: str = "ars"  # ars | random_search
    env_id: str = "CartPole-v1"  # gymnasium id
    fast_env: bool = True  # numpy CartPole for the rollouts
    iterations: int = 200  # updates at most
    directions: int = 8  # ARS: directions N per update
    top: int = 4  # ARS: best directions b used in the step
    step_size: float = 0.02  # ARS alpha; random search: base step c of the line search
    noise: float = 0.03  # ARS exploration noise nu
    line_points: int = 6  # random search: step sizes c 2^k, k = -2..line_points-3, each sign
    episodes: int = 1  # episodes per evaluated policy
    normalize: bool = True  # ARS V2: running state normalisation
    eval_every: int = 2  # updates between greedy evaluations
    eval_episodes: int = 10  # episodes per periodic evaluation
    final_episodes: int = 100  # episodes in the final evaluation (different seeds)
    stop_return: float = 475.0  # stop once a periodic evaluation reaches this (0: never)


def train_search(cfg: SearchConfig, run: Run) -> dict[str, float]:
    seed = run_seed(run)
    rng = np.random.default_rng(seed)
    probe = make_vec(cfg.env_id, 1, seed, cfg.fast_env)
    discrete = probe.n_actions is not None
    A = probe.n_actions if discrete else probe.act_dim
    D = probe.obs_dim
    low, high = getattr(probe, "action_low", None), getattr(probe, "action_high", None)
    M = np.zeros((A, D))
    stats = {"sum": np.zeros(D), "sqsum": np.zeros(D), "count": 0}
    steps, train_s, eval_return, reached = 0, 0.0, -np.inf, None

    def norm():
        if cfg.method != "ars" or not cfg.normalize or stats["count"] < 2:
            return None, None
        mean = stats["sum"] / stats["count"]
        var = np.maximum(stats["sqsum"] / stats["count"] - mean ** 2, 1e-8)
        return mean, np.sqrt(var)

    for it in range(cfg.iterations):
        t0 = time.perf_counter()
        mean, std = norm()
        ep_seed = seed * 1_000_003 + it
        if cfg.method == "ars":
            delta = rng.standard_normal((cfg.directions, A, D))
            cand = np.concatenate([M + cfg.noise * delta, M - cfg.noise * delta])  # (2N, A, D)
            out = population_rollouts(linear_act(cand, discrete, mean, std, low, high), 2 * cfg.directions,
                                      cfg.episodes, ep_seed, cfg.env_id, cfg.fast_env)
            r_plus, r_minus = np.split(out["returns"], 2)
            best = np.argsort(-np.maximum(r_plus, r_minus))[:cfg.top]
            sigma_r = np.concatenate([r_plus[best], r_minus[best]]).std() + 1e-8
            M = M + cfg.step_size / (cfg.top * sigma_r) * np.einsum("k,kad->ad", r_plus[best] - r_minus[best],
                                                                     delta[best])
            if cfg.normalize:
                stats["sum"] += out["obs_sum"]; stats["sqsum"] += out["obs_sqsum"]; stats["count"] += out["obs_count"]  # noqa: E702,E501
            train_ret = float(out["returns"].mean())
        elif cfg.method == "random_search":
            v = rng.standard_normal((A, D))
            v /= np.linalg.norm(v)
            mags = cfg.step_size * 2.0 ** np.arange(-2, cfg.line_points - 2)
            etas = np.concatenate([[0.0], mags, -mags])  # eta = 0 first: ties keep M
            cand = M[None] + etas[:, None, None] * v[None]  # (C, A, D)
            out = population_rollouts(linear_act(cand, discrete, low=low, high=high), len(etas), cfg.episodes,
                                      ep_seed, cfg.env_id, cfg.fast_env)
            k = int(np.argmax(out["returns"]))
            M = cand[k]
            train_ret = float(out["returns"][k])
        else:
            raise ValueError(f"method must be ars or random_search, not {cfg.method!r}")
        steps += out["steps"]
        train_s += time.perf_counter() - t0
        run.log(it, train_return=train_ret, env_steps=steps)
        if (it + 1) % cfg.eval_every == 0:
            t1 = time.perf_counter()
            mean, std = norm()
            greedy = linear_act(M[None], discrete, mean, std, low, high)
            eval_return, _ = evaluate(lambda o: greedy(o[None])[0], cfg.env_id, cfg.eval_episodes,
                                      seed=50_000 + it, num_envs=cfg.eval_episodes)
            train_s += time.perf_counter() - t1
            run.log(it + 1, eval_return=eval_return, env_steps=steps)
            if cfg.stop_return and eval_return >= cfg.stop_return:
                reached = (steps, train_s)
                break
    mean, std = norm()
    greedy = linear_act(M[None], discrete, mean, std, low, high)
    final, final_std = evaluate(lambda o: greedy(o[None])[0], cfg.env_id, cfg.final_episodes, seed=10_000)
    run.save_text("policy.txt", np.array2string(M, precision=4))
    return {"eval_return": final, "eval_return_std": final_std, "env_steps": steps, "train_s": train_s,
            "steps_to_target": reached[0] if reached else -1, "seconds_to_target": reached[1] if reached else -1,
            "iterations": it + 1}


_QUICK = {"iterations": 6, "eval_every": 3, "eval_episodes": 4, "final_episodes": 10, "stop_return": 0.0}


@recipe("cartpole-ars", lecture=9, section="Connection to random search (Augmented Random Search)",
        config=SearchConfig, presets={"quick": _QUICK},
        target=Target("eval_return", ">=", 475, "CartPole-v1 solved; max 500"))
def cartpole_ars(cfg: SearchConfig, run: Run) -> dict[str, float]:
    """ARS V2-t (Mania et al. 2018) with a linear policy on CartPole-v1."""
    return train_search(cfg, run)


@recipe("cartpole-random-search", lecture=9, section="Connection to random search (direction + line search)",
        config=SearchConfig, presets={"full": {"method": "random_search", "step_size": 0.1, "episodes": 3},
                                      "quick": _QUICK},
        target=Target("eval_return", ">=", 475, "CartPole-v1 solved; max 500"))
def cartpole_random_search(cfg: SearchConfig, run: Run) -> dict[str, float]:
    """The notes' random search: random direction, line search over the step size, linear policy."""
    return train_search(cfg, run)
