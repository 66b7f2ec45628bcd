"""Evolution strategies (Salimans et al. 2017), the notes' "Evolutionary search" (Lecture 9).

Make the policy parameters themselves random, ``theta' = theta + sigma eps`` with
``eps ~ N(0, I)``, and apply the log-derivative trick to *that* distribution:

    grad_theta E_eps F(theta + sigma eps) = (1 / sigma) E_eps [ F(theta + sigma eps) eps ],

estimated from a population without any backpropagation through the policy. Three standard
refinements:

* antithetic sampling: evaluate the ``n`` pairs ``theta +- sigma eps_i`` (population ``2n``); the
  estimate becomes ``g = 1 / (2 n sigma) sum_i (F_i^+ - F_i^-) eps_i`` (lower variance);
* rank shaping: replace the returns by their centred ranks in [-0.5, 0.5] (invariant to the
  reward's scale and robust to outliers);
* Adam on ``-g`` with a small L2 weight decay.

Parallelism follows the paper's trick: workers share nothing but a seed. Each worker rebuilds
``eps_i`` from ``(seed, generation, i)``, evaluates its slice of the population (batched in one
vector env) and sends back only returns; ``workers=2`` uses both cores of this machine via a
``fork`` process pool, ``workers=1`` runs in-process, and the result is the same either way.
The policy is a small tanh MLP written in numpy (no torch in the workers).
"""
from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass

import numpy as np

from ..engine import Run, Target, recipe
from .envs import evaluate, make_vec, population_rollouts, run_seed


class MLPPolicy:
    """Shapes of a tanh MLP ``D -> H -> A`` flattened into one parameter vector."""

    def __init__(self, obs_dim: int, hidden: int, n_out: int, discrete: bool):
        self.shapes = [(obs_dim, hidden), (hidden,), (hidden, n_out), (n_out,)]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.dim = sum(self.sizes)
        self.discrete = discrete

    def init(self, rng: np.random.Generator) -> np.ndarray:
        parts = [rng.standard_normal(s) / np.sqrt(s[0]) if len(s) == 2 else np.zeros(s) for s in self.shapes]
        return np.concatenate([p.ravel() for p in parts])

    def act(self, thetas: np.ndarray, low=None, high=None):
        """Batched policy for P parameter vectors ``thetas`` (P, dim); obs (P, E, D) -> actions."""
        P = thetas.shape[0]
        W1, b1, W2, b2 = np.split(thetas, np.cumsum(self.sizes)[:-1], axis=1)
        W1, W2 = W1.reshape(P, *self.shapes[0]), W2.reshape(P, *self.shapes[2])

        def act(obs):
            h = np.tanh(np.einsum("ped,pdh->peh", obs, W1) + b1[:, None])  # (P, E, H)
            y = np.einsum("peh,pha->pea", h, W2) + b2[:, None]  # (P, E, A)
            return y.argmax(-1) if self.discrete else np.clip(y, low, high)
        return act


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` (any shape) mapped linearly to [-0.5, 0.5]; ties get distinct ranks."""
    ranks = np.empty(x.size)
    ranks[x.ravel().argsort(kind="stable")] = np.arange(x.size)
    return (ranks / max(x.size - 1, 1) - 0.5).reshape(x.shape)


def noise(seed: int, gen: int, i: int, dim: int) -> np.ndarray:
    return np.random.default_rng([seed, gen, i]).standard_normal(dim)


def _evaluate_pairs(args):
    """Worker task: returns (k, 2) of the pairs ``theta +- sigma eps_i`` for i in ``idx``."""
    theta, idx, sigma, seed, gen, policy, episodes, ep_seed, env_id, fast, low, high = args
    eps = np.stack([noise(seed, gen, i, theta.size) for i in idx])  # (k, dim)
    thetas = np.concatenate([theta + sigma * eps, theta - sigma * eps])  # (2k, dim)
    out = population_rollouts(policy.act(thetas, low, high), len(thetas), episodes, ep_seed, env_id, fast)
    return np.stack(np.split(out["returns"], 2), 1), out["steps"]


class Adam:
    def __init__(self, dim: int, lr: float, b1: float = 0.9, b2: float = 0.999):
        self.lr, self.b1, self.b2, self.t = lr, b1, b2, 0
        self.m, self.v = np.zeros(dim), np.zeros(dim)

    def step(self, grad: np.ndarray) -> np.ndarray:
        """The change to add to the parameters to *descend* ``grad``."""
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad ** 2
        mhat, vhat = self.m / (1 - self.b1 ** self.t), self.v / (1 - self.b2 ** self.t)
        return -self.lr * mhat / (np.sqrt(vhat) + 1e-8)


@dataclass
class ESConfig:
    env_id: str = "CartPole-v1"  # gymnasium id
    fast_env: bool = True  # numpy CartPole for the rollouts
    hidden: int = 16  # MLP hidden width
    pairs: int = 16  # antithetic pairs per generation (population = 2 * pairs)
    sigma: float = 0.1  # perturbation scale
    lr: float = 0.03  # Adam step size
    weight_decay: float = 0.005  # L2 coefficient added to the search gradient
    rank_shaping: bool = True  # centred ranks instead of raw returns
    episodes: int = 1  # episodes per population member
    workers: int = 2  # processes evaluating the population (1: in-process)
    generations: int = 200  # updates at most
    eval_every: int = 2  # generations between greedy evaluations
    eval_episodes: int = 10  # episodes per periodic evaluation
    final_episodes: int = 100  # episodes in the final evaluation (different seeds)
    stop_return: float = 475.0  # stop once a periodic evaluation reaches this (0: never)


def es_gradient(returns: np.ndarray, eps: np.ndarray, sigma: float, rank_shaping: bool) -> np.ndarray:
    """``g = 1/(2n sigma) sum_i (F_i^+ - F_i^-) eps_i`` from returns (n, 2) and noise (n, dim)."""
    F = centered_ranks(returns) if rank_shaping else returns
    return (F[:, 0] - F[:, 1]) @ eps / (2 * len(eps) * sigma)


def train_es(cfg: ESConfig, run: Run) -> dict[str, float]:
    seed = run_seed(run)
    probe = make_vec(cfg.env_id, 1, seed, cfg.fast_env)
    discrete = probe.n_actions is not None
    low, high = getattr(probe, "action_low", None), getattr(probe, "action_high", None)
    policy = MLPPolicy(probe.obs_dim, cfg.hidden, probe.n_actions if discrete else probe.act_dim, discrete)
    theta = policy.init(np.random.default_rng(seed))
    adam = Adam(policy.dim, cfg.lr)
    pool = mp.get_context("fork").Pool(cfg.workers) if cfg.workers > 1 else None
    chunks = np.array_split(np.arange(cfg.pairs), max(cfg.workers, 1))
    steps, train_s, reached = 0, 0.0, None
    greedy = lambda o: policy.act(theta[None], low, high)(o[None])[0]  # noqa: E731
    try:
        for gen in range(cfg.generations):
            t0 = time.perf_counter()
            ep_seed = seed * 1_000_003 + gen
            tasks = [(theta, idx, cfg.sigma, seed, gen, policy, cfg.episodes, ep_seed, cfg.env_id, cfg.fast_env,
                      low, high) for idx in chunks]
            results = pool.map(_evaluate_pairs, tasks) if pool else [_evaluate_pairs(t) for t in tasks]
            returns = np.concatenate([r for r, _ in results])  # (pairs, 2)
            steps += sum(s for _, s in results)
            eps = np.stack([noise(seed, gen, i, policy.dim) for i in range(cfg.pairs)])  # (pairs, dim)
            g = es_gradient(returns, eps, cfg.sigma, cfg.rank_shaping) - cfg.weight_decay * theta
            theta = theta + adam.step(-g)  # ascend the search gradient
            train_s += time.perf_counter() - t0
            run.log(gen, train_return=float(returns.mean()), env_steps=steps)
            if (gen + 1) % cfg.eval_every == 0:
                t1 = time.perf_counter()
                ev, _ = evaluate(greedy, cfg.env_id, cfg.eval_episodes, seed=50_000 + gen, num_envs=cfg.eval_episodes)
                train_s += time.perf_counter() - t1
                run.log(gen + 1, eval_return=ev, env_steps=steps)
                if cfg.stop_return and ev >= cfg.stop_return:
                    reached = (steps, train_s)
                    break
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    final, final_std = evaluate(greedy, cfg.env_id, cfg.final_episodes, seed=10_000)
    return {"eval_return": final, "eval_return_std": final_std, "env_steps": steps, "train_s": train_s,
            "steps_to_target": reached[0] if reached else -1, "seconds_to_target": reached[1] if reached else -1,
            "generations": gen + 1, "throughput": steps / max(train_s, 1e-9)}


@recipe("cartpole-es", lecture=9, section="Evolutionary search (ES: antithetic, rank shaping, parallel)",
        config=ESConfig,
        presets={"quick": {"generations": 6, "eval_every": 3, "eval_episodes": 4, "final_episodes": 10,
                           "stop_return": 0.0, "pairs": 8}},
        target=Target("eval_return", ">=", 475, "CartPole-v1 solved; max 500"))
def cartpole_es(cfg: ESConfig, run: Run) -> dict[str, float]:
    """Salimans et al. evolution strategies with an MLP policy on CartPole-v1, 2 worker processes."""
    return train_es(cfg, run)
