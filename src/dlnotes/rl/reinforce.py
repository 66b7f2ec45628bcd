"""REINFORCE: Monte Carlo policy gradient (Lecture 9, "Policy gradients").

With the log-derivative trick ``d/dtheta pi = pi d/dtheta log pi``,

    grad_theta E_{pi(tau)} R(tau) = E_{pi(tau)} [ R(tau) grad_theta log pi(tau) ],
    log pi(tau) = sum_t log pi_theta(a_t | s_t) + (terms of the dynamics, free of theta),

so sampling rollouts gives an unbiased gradient estimate. We *maximise* return (the notes minimise
``-R``), so the update is ``theta <- theta + eta * mean_over_episodes sum_t w_t grad log pi(a_t|s_t)``
with one of three weights ``w_t`` (``estimator``):

* ``trajectory``:   ``w_t = R(tau) = sum_t gamma^t r_t`` (the notes' first version);
* ``reward_to_go``: ``w_t = G_t = sum_{t'>=t} gamma^{t'-t} r_{t'}`` ("actions should be reinforced
  only based on future rewards");
* ``baseline``:     ``w_t = G_t - b(s_t)``, with a value network ``b`` re-fitted to ``G_t`` on every
  batch by regression (the notes' variance-reduction fix: adding a constant to the reward no
  longer reinforces every action).

(As usual in practice, the ``gamma^t`` factor in front of ``G_t`` is dropped.) Weights may be
standardised over the batch and an entropy bonus ``beta H(pi(.|s_t))`` added. Policies:
categorical logits for discrete actions, a Gaussian ``N(mu_theta(s), diag sigma^2)`` with a
learned state-independent ``log sigma`` for continuous ones; evaluation is greedy (argmax / mean).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..engine import Run, Target, recipe
from .envs import (collect_episodes, discounted_return, evaluate, make_vec, reward_to_go, run_seed, timed_eval,
                   torch_threads, training_result)


def mlp(sizes, act=nn.Tanh) -> nn.Sequential:
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), act()]
    return nn.Sequential(*layers[:-1])


class CategoricalPolicy(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()
        self.net = mlp([obs_dim, hidden, hidden, n_actions])

    def dist(self, obs: torch.Tensor):
        return torch.distributions.Categorical(logits=self.net(obs))

    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).argmax(-1)


class GaussianPolicy(nn.Module):
    """``N(mu(s), diag sigma^2)``; with ``bound`` the mean is squashed, ``mu = bound tanh(net(s))``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 64, log_std: float = -0.5, bound=None):
        super().__init__()
        self.net = mlp([obs_dim, hidden, hidden, act_dim])
        self.log_std = nn.Parameter(torch.full((act_dim,), log_std))
        self.register_buffer("bound", None if bound is None else torch.as_tensor(bound, dtype=torch.float32))

    def mean(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs) if self.bound is None else self.bound * torch.tanh(self.net(obs))

    def dist(self, obs: torch.Tensor):
        return torch.distributions.Independent(torch.distributions.Normal(self.mean(obs), self.log_std.exp()), 1)

    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mean(obs)


def pg_surrogate(logp: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``-(1/N) sum_n sum_t mask * w_t log pi(a_t|s_t)``: its gradient is minus the REINFORCE estimate."""
    return -(logp * weights * mask).sum() / mask.shape[-1]


def pg_weights(batch: dict, gamma: float, estimator: str, values: np.ndarray | None = None) -> np.ndarray:
    """The (T, N) weights ``w_t`` of the chosen estimator (see the module docstring)."""
    if estimator == "trajectory":
        R = discounted_return(batch["rewards"], batch["mask"], gamma)  # (N,)
        return np.broadcast_to(R, batch["rewards"].shape) * batch["mask"]
    G = reward_to_go(batch["rewards"], batch["dones"], gamma) * batch["mask"]  # (T, N)
    if estimator == "reward_to_go":
        return G
    if estimator == "baseline":
        return (G - values) * batch["mask"]
    raise ValueError(f"estimator must be trajectory, reward_to_go or baseline, not {estimator!r}")


@dataclass
class ReinforceConfig:
    env_id: str = "CartPole-v1"  # gymnasium id (discrete -> categorical policy, Box -> Gaussian)
    fast_env: bool = True  # train on our batched numpy env when there is one (CartPole, Acrobot, Pendulum)
    estimator: str = "baseline"  # trajectory | reward_to_go | baseline
    episodes_per_batch: int = 16  # rollouts per gradient step (= vectorized envs)
    hidden: int = 64  # width of the two hidden layers (policy and baseline)
    lr: float = 1e-2  # Adam step size for the policy
    gamma: float = 0.99  # discount
    baseline_lr: float = 1e-2  # Adam step size for the value baseline
    baseline_iters: int = 10  # regression steps on the baseline per batch
    entropy: float = 0.0  # entropy bonus coefficient beta
    normalize: bool = True  # standardise the weights w_t over the batch
    max_episode_steps: int = 1000  # safety cap on an episode's length
    updates: int = 400  # gradient steps at most
    eval_every: int = 5  # updates between greedy evaluations
    eval_episodes: int = 10  # episodes per periodic evaluation
    final_episodes: int = 100  # episodes in the final evaluation (different seeds)
    stop_return: float = 475.0  # stop once a periodic evaluation reaches this (0: never)
    ckpt_every: int = 50  # updates between checkpoints


def make_policy(env, hidden: int) -> nn.Module:
    if env.n_actions is not None:
        return CategoricalPolicy(env.obs_dim, env.n_actions, hidden)
    high = env.action_high
    bound = high if high is not None and np.isfinite(high).all() else None
    return GaussianPolicy(env.obs_dim, env.act_dim, hidden, bound=bound)


def train_reinforce(cfg: ReinforceConfig, run: Run) -> dict[str, float]:
    with torch_threads(1):
        return _train_reinforce(cfg, run)


def _train_reinforce(cfg: ReinforceConfig, run: Run) -> dict[str, float]:
    seed = run_seed(run)
    env = make_vec(cfg.env_id, cfg.episodes_per_batch, seed, cfg.fast_env)
    policy = make_policy(env, cfg.hidden)
    baseline = mlp([env.obs_dim, cfg.hidden, cfg.hidden, 1])
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    bopt = torch.optim.Adam(baseline.parameters(), lr=cfg.baseline_lr)
    run.watch(policy=policy, baseline=baseline, optimizer=opt, baseline_optimizer=bopt)
    run.restore()
    st = run.state
    st.setdefault("env_steps", 0), st.setdefault("train_s", 0.0)
    discrete = env.n_actions is not None

    @torch.no_grad()
    def act_sample(obs):
        a = policy.dist(torch.as_tensor(obs)).sample().numpy()
        return a if discrete else np.clip(a, env.action_low, env.action_high)

    @torch.no_grad()
    def act_greedy(obs):
        a = policy.greedy(torch.as_tensor(obs)).numpy()
        return a if discrete else np.clip(a, env.action_low, env.action_high)

    for step in run.steps(cfg.updates, unit="upd"):
        t0 = time.perf_counter()
        batch = collect_episodes(env, act_sample, seed=seed * 1_000_003 + step, max_steps=cfg.max_episode_steps)
        obs = torch.as_tensor(batch["obs"])  # (T, N, D)
        mask = torch.as_tensor(batch["mask"], dtype=torch.float32)  # (T, N)
        values = None
        if cfg.estimator == "baseline":  # refit b(s) to the reward-to-go, then use the fitted values
            G = torch.as_tensor(reward_to_go(batch["rewards"], batch["dones"], cfg.gamma), dtype=torch.float32)
            for _ in range(cfg.baseline_iters):
                bloss = (((baseline(obs).squeeze(-1) - G) ** 2) * mask).sum() / mask.sum()
                bopt.zero_grad(set_to_none=True)
                bloss.backward()
                bopt.step()
            with torch.no_grad():
                values = baseline(obs).squeeze(-1).numpy()
        w = pg_weights(batch, cfg.gamma, cfg.estimator, values)
        w = torch.as_tensor(w, dtype=torch.float32)
        if cfg.normalize:
            m = w[mask > 0]
            w = (w - m.mean()) / (m.std() + 1e-8)
        d = policy.dist(obs)
        logp = d.log_prob(torch.as_tensor(batch["actions"]))  # (T, N)
        loss = pg_surrogate(logp, w, mask) - cfg.entropy * (d.entropy() * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        st["env_steps"] += batch["steps"]
        st["train_s"] += time.perf_counter() - t0
        ep_ret = float(batch["rewards"].sum(0).mean())
        run.log(step, loss=loss.item(), train_return=ep_ret, env_steps=st["env_steps"])
        if ((step + 1) % cfg.eval_every == 0 or step == cfg.updates - 1) and timed_eval(
                run, st, step + 1, lambda: evaluate(act_greedy, cfg.env_id, cfg.eval_episodes, seed=50_000 + step,
                                                    num_envs=cfg.eval_episodes)[0], cfg.stop_return):
            break
    final = evaluate(act_greedy, cfg.env_id, cfg.final_episodes, seed=10_000)
    run.checkpoint()
    return training_result(st, final)


_QUICK = {"updates": 15, "eval_every": 5, "eval_episodes": 4, "final_episodes": 4, "ckpt_every": 5,
          "episodes_per_batch": 8}

for _est, _target in (("baseline", Target("eval_return", ">=", 475, "CartPole-v1 solved; max 500")),
                      ("reward_to_go", None), ("trajectory", None)):
    def _make(est=_est, target=_target):
        def cartpole_reinforce(cfg: ReinforceConfig, run: Run) -> dict[str, float]:
            return train_reinforce(cfg, run)
        cartpole_reinforce.__doc__ = f"REINFORCE ({est.replace('_', '-')} weights) on CartPole-v1, categorical MLP policy."
        name = "cartpole-reinforce" + ("" if est == "baseline" else "-" + est.replace("_", "-"))
        return recipe(name, lecture=9, section="Policy gradients (REINFORCE); baseline", config=ReinforceConfig,
                      presets={"full": {"estimator": est}, "quick": _QUICK}, target=target)(cartpole_reinforce)
    _make()


@recipe("pendulum-reinforce", lecture=9, section="Policy gradients with a Gaussian policy", config=ReinforceConfig,
        presets={"full": {"env_id": "Pendulum-v1", "episodes_per_batch": 32, "lr": 3e-3, "gamma": 0.9,
                          "baseline_iters": 50, "updates": 300, "stop_return": 0.0, "eval_every": 20,
                          "entropy": 0.0},
                 "quick": {**_QUICK, "eval_every": 5}},
        target=Target("eval_return", ">=", -900, "random policy scores about -1200"))
def pendulum_reinforce(cfg: ReinforceConfig, run: Run) -> dict[str, float]:
    """REINFORCE with a baseline and a Gaussian policy on Pendulum-v1 (continuous torque)."""
    return train_reinforce(cfg, run)
