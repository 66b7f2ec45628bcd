"""Actor-critic methods (Lecture 11, "Actor-critic methods"): TD actor-critic, A2C with GAE, PPO.

The notes replace the sampled return ``R`` in the log-derivative update
``grad_theta E R(tau) ~ R(s, a) grad_theta log pi_theta(a|s)`` by a learned critic's estimate and run,
at every time step: (a) sample ``a ~ pi_theta(.|s_t)``; (b) update the actor with the log-derivative
trick weighted by the critic; (c) compute the Bellman (TD) error ``delta_t``; (d) update the critic by
that TD error; (e) move to ``s_{t+1}``. Three algorithms share one rollout/update loop here:

* ``td`` (the notes' algorithm, on ``num_envs`` environments at once). With a state-value critic
  (``critic="v"``) ``delta_t = r_t + gamma (1 - d_t) V_phi(s_{t+1}) - V_phi(s_t)``; the actor ascends
  ``delta_t grad log pi(a_t|s_t)`` (``delta_t`` is an unbiased estimate of the advantage
  ``Q(s,a) - V(s)``) and the critic descends ``delta_t^2`` with the target held fixed (semi-gradient TD).
  With an action-value critic (``critic="q"``, exactly the notes' ``Q_phi``) the actor is weighted
  by ``Q_phi(s_t, a_t) - sum_a pi(a|s_t) Q_phi(s_t, a)`` (the state value subtracted as a baseline,
  which leaves the expected gradient unchanged) and the critic follows the (expected-SARSA) Bellman
  error ``delta_t = r_t + gamma (1 - d_t) sum_a' pi(a'|s_{t+1}) Q_phi(s_{t+1}, a') - Q_phi(s_t, a_t)``.
* ``a2c`` (Mnih et al. 2016, synchronous): ``n_steps`` steps on each of ``num_envs`` envs, then one
  update with generalised advantage estimation (Schulman et al. 2016)
  ``A_t = sum_k (gamma lambda)^k delta_{t+k}`` (cut at episode ends), value target ``A_t + V(s_t)``,
  loss ``-mean(A_t log pi(a_t|s_t)) + c_v mean((V(s_t) - target_t)^2) - c_H mean(H(pi(.|s_t)))``.
  ``n_steps=1, lambda=0`` is the ``td`` update.
* ``ppo`` (Schulman et al. 2017): the same rollouts and advantages, then ``ppo_epochs`` passes of
  minibatch steps on the clipped surrogate ``-mean(min(rho_t A_t, clip(rho_t, 1-eps, 1+eps) A_t))``,
  ``rho_t = pi_theta(a_t|s_t) / pi_old(a_t|s_t)``, with advantages standardised per minibatch.

A time-limit truncation is not a terminal state: the reward of that step gets ``gamma V(s_final)``
added (the bootstrap the cut-off future would have given) and the advantage chain is then cut.
Actor and critic are separate 64x64 tanh MLPs with orthogonal initialisation (stable-baselines3's
defaults). Training uses our
batched numpy CartPole/Acrobot (:mod:`dlnotes.rl.envs`); evaluation the greedy policy on
gymnasium's env with fixed seeds. ``normalize_obs`` keeps running observation statistics (like
SB3's ``VecNormalize``), stored with the model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..engine import Run, Target, recipe
from ..engine.schedules import set_lr
from .envs import CartPoleVec, evaluate, make_vec, run_seed, timed_eval, torch_threads, training_result
from .reinforce import mlp


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_values: torch.Tensor,
        gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages ``A_t = delta_t + gamma lambda (1 - d_t) A_{t+1}`` and value targets ``A_t + V(s_t)``.

    ``rewards, values, dones`` are (T, N); ``dones[t]`` marks that the episode ended with step t (the
    value after it is not used); ``last_values`` (N,) is ``V(s_T)`` for bootstrapping the block."""
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    for t in range(T - 1, -1, -1):
        nxt = last_values if t == T - 1 else values[t + 1]
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * live * nxt - values[t]
        running = delta + gamma * lam * live * running
        adv[t] = running
    return adv, adv + values


class RunningNorm(nn.Module):
    """Observation standardisation with running mean and variance (parallel-variance update), clipped."""

    def __init__(self, dim: int, clip: float = 10.0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))
        self.clip = clip

    @torch.no_grad()
    def update(self, x: np.ndarray) -> None:
        x = torch.as_tensor(x, dtype=torch.float64, device=self.mean.device)
        m, v, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, tot = m - self.mean, self.count + n
        self.mean += delta * n / tot
        self.var.copy_((self.var * self.count + v * n + delta ** 2 * self.count * n / tot) / tot)
        self.count.fill_(tot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean.float()) / torch.sqrt(self.var.float() + 1e-8)
        return z.clamp(-self.clip, self.clip)


class ActorCritic(nn.Module):
    """Separate actor (logits) and critic MLPs; the critic outputs V(s) or Q(s, .) (``q_critic``)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64, q_critic: bool = False,
                 normalize_obs: bool = False):
        super().__init__()
        self.norm = RunningNorm(obs_dim) if normalize_obs else nn.Identity()
        self.actor = mlp([obs_dim, hidden, hidden, n_actions])
        self.critic = mlp([obs_dim, hidden, hidden, n_actions if q_critic else 1])
        self.q_critic = q_critic
        # orthogonal init (OpenAI baselines / SB3): gain sqrt(2) inside, 0.01 for the logits (a near-uniform
        # initial policy), 1 for the values; zero biases
        for body, head_gain in ((self.actor, 0.01), (self.critic, 1.0)):
            layers = [m for m in body if isinstance(m, nn.Linear)]
            for i, lin in enumerate(layers):
                nn.init.orthogonal_(lin.weight, head_gain if i == len(layers) - 1 else 2 ** 0.5)
                nn.init.zeros_(lin.bias)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(obs)
        logits = self.actor(x)
        return logits, (self.critic(x) if self.q_critic else self.critic(x).squeeze(-1))

    def state_value(self, logits: torch.Tensor, critic_out: torch.Tensor) -> torch.Tensor:
        """``V(s)``: the critic itself, or ``sum_a pi(a|s) Q(s, a)`` for a Q critic."""
        return (logits.softmax(-1) * critic_out).sum(-1) if self.q_critic else critic_out


@dataclass
class ActorCriticConfig:
    env_id: str = "CartPole-v1"  # gymnasium id with discrete actions
    fast_env: bool = True  # train on the batched numpy env when there is one (CartPole, Acrobot)
    algo: str = "a2c"  # td | a2c | ppo
    critic: str = "v"  # v (state value) | q (action values, the notes' Q_phi; td only)
    num_envs: int = 8  # environments stepped together
    n_steps: int = 5  # steps per env between updates (td: 1)
    gamma: float = 0.99  # discount
    gae_lambda: float = 1.0  # GAE lambda (1: n-step returns; 0: one-step TD error)
    optimizer: str = "rmsprop"  # rmsprop (A2C paper, alpha 0.99, eps 1e-5) | adam
    lr: float = 7e-4  # learning rate
    lr_decay: bool = False  # anneal the learning rate (and PPO's clip range) linearly to 0
    hidden: int = 64  # width of the actor's and the critic's two hidden layers
    value_coef: float = 0.5  # c_v
    entropy: float = 0.0  # c_H, entropy bonus
    max_grad_norm: float = 0.5  # global gradient-norm clip (0: none)
    normalize_adv: bool = False  # standardise advantages (PPO: per minibatch)
    normalize_obs: bool = False  # running observation standardisation
    ppo_epochs: int = 10  # PPO: passes over each rollout
    minibatch: int = 64  # PPO: samples per minibatch
    clip: float = 0.2  # PPO: eps of the clipped ratio
    total_steps: int = 500_000  # env steps at most (training stops earlier at stop_return)
    eval_every: int = 5000  # env steps between greedy evaluations
    eval_episodes: int = 10  # episodes per periodic evaluation
    final_episodes: int = 100  # episodes of the final evaluation (different seeds)
    stop_return: float = 475.0  # record env steps and seconds to the first evaluation reaching this (0: none)
    stop_at_target: bool = True  # and stop training there (False: train all total_steps, then evaluate)
    ckpt_every: int = 500  # updates between checkpoints


def train_actor_critic(cfg: ActorCriticConfig, run: Run) -> dict[str, float]:
    if cfg.algo not in ("td", "a2c", "ppo"):
        raise ValueError(f"algo must be td, a2c or ppo, not {cfg.algo!r}")
    if cfg.critic not in ("v", "q") or (cfg.critic == "q" and cfg.algo != "td"):
        raise ValueError(f"critic must be 'v', or 'q' with algo=td; got critic={cfg.critic!r}, algo={cfg.algo!r}")
    with torch_threads(1):
        return _train(cfg, run)


def _train(cfg: ActorCriticConfig, run: Run) -> dict[str, float]:
    seed = run_seed(run)
    env = make_vec(cfg.env_id, cfg.num_envs, seed, cfg.fast_env)
    if env.n_actions is None:
        raise ValueError(f"env_id {cfg.env_id!r} has continuous actions; these actor-critic recipes need discrete ones")
    n_steps = 1 if cfg.algo == "td" else cfg.n_steps
    net = ActorCritic(env.obs_dim, env.n_actions, cfg.hidden, cfg.critic == "q", cfg.normalize_obs).to(run.device)
    opt = (torch.optim.RMSprop(net.parameters(), lr=cfg.lr, alpha=0.99, eps=1e-5) if cfg.optimizer == "rmsprop"
           else torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5, fused=True))
    run.watch(model=net, optimizer=opt)
    start = run.restore()
    st = run.state
    for k, v in (("env_steps", 0), ("train_s", 0.0)):
        st.setdefault(k, v)
    obs = env.load_snapshot(st["env"]) if start and st.get("env") is not None else env.reset(seed)
    updates = max(1, cfg.total_steps // (cfg.num_envs * n_steps))
    eval_updates = max(1, cfg.eval_every // (cfg.num_envs * n_steps))
    dev = run.device
    ep_ret, recent = np.zeros(cfg.num_envs), []

    def greedy(o):
        with torch.no_grad():
            return net(torch.as_tensor(o, device=dev))[0].argmax(-1).cpu().numpy()

    for it in run.steps(updates, unit="upd", items_per_step=cfg.num_envs * n_steps):
        t0 = time.perf_counter()
        frac = 1.0 - it / updates if cfg.lr_decay else 1.0
        set_lr(opt, cfg.lr * frac)
        O, A, R, D = [], [], [], []
        for _ in range(n_steps):  # (a) act, (e) move on
            if cfg.normalize_obs:
                net.norm.update(obs)
            with torch.no_grad():
                logits, _ = net(torch.as_tensor(obs, device=dev))
                u = torch.rand_like(logits).clamp_(1e-12, 1.0)
                a = (logits - torch.log(-torch.log(u))).argmax(-1).cpu().numpy()  # Gumbel-max sample
            nxt, r, term, trunc, final_obs = env.step(a)
            r = r.astype(np.float64)
            ep_ret += r
            if trunc.any():  # bootstrap the cut-off future: r += gamma V(s_final)
                with torch.no_grad():
                    lg, c = net(torch.as_tensor(final_obs[trunc], device=dev))
                    r[trunc] += cfg.gamma * net.state_value(lg, c).double().cpu().numpy()
            for i in np.flatnonzero(term | trunc):
                recent = (recent + [ep_ret[i]])[-20:]
                ep_ret[i] = 0.0
            O.append(obs), A.append(a), R.append(r), D.append(term | trunc)
            obs = nxt
        obs_t = torch.as_tensor(np.stack(O), device=dev)  # (T, N, D)
        act_t = torch.as_tensor(np.stack(A), device=dev)
        rew_t = torch.as_tensor(np.stack(R), dtype=torch.float32, device=dev)
        done_t = torch.as_tensor(np.stack(D), dtype=torch.float32, device=dev)
        with torch.no_grad():
            lg, c = net(torch.as_tensor(obs, device=dev))
            last_v = net.state_value(lg, c)
        if cfg.algo == "ppo":
            loss, stats = ppo_update(net, opt, cfg, obs_t, act_t, rew_t, done_t, last_v, frac)
        else:
            loss, stats = a2c_update(net, opt, cfg, obs_t, act_t, rew_t, done_t, last_v)
        st["env_steps"] += cfg.num_envs * n_steps
        st["train_s"] += time.perf_counter() - t0
        st["env"] = env.snapshot() if isinstance(env, CartPoleVec) else None
        if it % max(1, 2000 // (cfg.num_envs * n_steps)) == 0:
            if recent:  # no point before the first episode ends
                stats["train_return"] = float(np.mean(recent))
            run.log(st["env_steps"], loss=loss, **stats)
        else:
            run.log_check(it, loss=loss)
        if ((it + 1) % eval_updates == 0 or it == updates - 1) and timed_eval(
                run, st, st["env_steps"], lambda: evaluate(greedy, cfg.env_id, cfg.eval_episodes, seed=50_000 + it,
                                                           num_envs=cfg.eval_episodes)[0], cfg.stop_return) \
                and cfg.stop_at_target:
            break
    final = evaluate(greedy, cfg.env_id, cfg.final_episodes, seed=10_000)
    run.checkpoint()
    return training_result(st, final)


def _step(net: ActorCritic, opt, loss: torch.Tensor, max_grad_norm: float) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm:
        nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
    opt.step()


def a2c_update(net, opt, cfg, obs, act, rew, done, last_v) -> tuple[float, dict]:
    """One A2C / TD actor-critic step on a (T, N) block (steps (b)-(d) of the notes' loop)."""
    logits, c = net(obs)
    logp_all = logits.log_softmax(-1)
    logp = logp_all.gather(-1, act.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    if net.q_critic:  # the notes' Q_phi: expected-SARSA TD error, actor weighted by Q(s,a) - V(s)
        q_sa = c.gather(-1, act.unsqueeze(-1)).squeeze(-1)
        v = net.state_value(logits, c).detach()
        target = rew + cfg.gamma * (1.0 - done) * last_v.unsqueeze(0)  # T = 1: s_{t+1} is the last state
        adv, value_loss = (q_sa - v).detach(), ((q_sa - target) ** 2).mean()
    else:
        adv, ret = gae(rew, c.detach(), done, last_v, cfg.gamma, 0.0 if cfg.algo == "td" else cfg.gae_lambda)
        value_loss = ((c - ret) ** 2).mean()
    weight = (adv - adv.mean()) / (adv.std() + 1e-8) if cfg.normalize_adv else adv
    policy_loss = -(weight * logp).mean()
    loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy * entropy
    _step(net, opt, loss, cfg.max_grad_norm)
    return loss.item(), {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item()}


def ppo_update(net, opt, cfg, obs, act, rew, done, last_v, frac: float) -> tuple[float, dict]:
    """``ppo_epochs`` passes of clipped-surrogate minibatch steps over one rollout."""
    with torch.no_grad():
        logits, v = net(obs)
        old_logp = logits.log_softmax(-1).gather(-1, act.unsqueeze(-1)).squeeze(-1)
        adv, ret = gae(rew, v, done, last_v, cfg.gamma, cfg.gae_lambda)
    flat = [x.reshape(-1, *x.shape[2:]) for x in (obs, act, old_logp, adv, ret)]
    n, eps = flat[0].shape[0], cfg.clip * frac
    mb = min(cfg.minibatch, n)
    for _ in range(cfg.ppo_epochs):
        for idx in torch.randperm(n, device=obs.device).split(mb):
            o, a, lp_old, ad, rt = (x[idx] for x in flat)
            logits, v = net(o)
            logp_all = logits.log_softmax(-1)
            logp = logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
            if len(idx) > 1:
                ad = (ad - ad.mean()) / (ad.std() + 1e-8)
            ratio = torch.exp(logp - lp_old)
            policy_loss = -torch.min(ratio * ad, ratio.clamp(1 - eps, 1 + eps) * ad).mean()
            value_loss = ((v - rt) ** 2).mean()
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy * entropy
            _step(net, opt, loss, cfg.max_grad_norm)
    clipped = ((ratio - 1).abs() > eps).float().mean().item()
    return loss.item(), {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                         "entropy": entropy.item(), "clip_fraction": clipped}


# ----------------------------------------------------------------------------- recipes
_SECTION = "Actor-critic methods"
_QUICK = {"total_steps": 4000, "eval_every": 2000, "eval_episodes": 3, "final_episodes": 3, "ckpt_every": 20,
          "stop_return": 0.0}
CARTPOLE = Target("eval_return", ">=", 475, "issue #6: CartPole-v1 solved (max 500)")
ACROBOT = Target("eval_return", ">=", -100, "issue #6; gymnasium's Acrobot-v1 reward threshold")
PPO_CARTPOLE = {"algo": "ppo", "optimizer": "adam", "num_envs": 8, "n_steps": 32, "minibatch": 256, "ppo_epochs": 20,
                "gae_lambda": 0.8, "gamma": 0.98, "lr": 1e-3, "lr_decay": True, "total_steps": 100_000}
PPO_ACROBOT = {"env_id": "Acrobot-v1", "algo": "ppo", "optimizer": "adam", "num_envs": 16, "n_steps": 256,
               "minibatch": 64, "ppo_epochs": 4, "gae_lambda": 0.94, "lr": 3e-4, "normalize_obs": True,
               "total_steps": 200_000, "stop_return": -100.0, "stop_at_target": False}
A2C_ACROBOT = {"env_id": "Acrobot-v1", "normalize_obs": True, "num_envs": 16, "n_steps": 8, "gae_lambda": 0.95,
               "lr": 1e-3, "total_steps": 500_000, "stop_return": -100.0, "stop_at_target": False}


def _register(name: str, doc: str, full: dict, target: Target | None) -> None:
    def fn(cfg: ActorCriticConfig, run: Run) -> dict[str, float]:
        return train_actor_critic(cfg, run)
    fn.__doc__ = doc
    fn.__name__ = name.replace("-", "_")
    recipe(name, lecture=11, section=_SECTION, config=ActorCriticConfig, target=target,
           presets={"full": full, "quick": {**full, **_QUICK}})(fn)


_register("cartpole-actor-critic", "The notes' TD actor-critic (state-value critic, one step per update) on CartPole-v1.",
          {"algo": "td", "num_envs": 16, "optimizer": "adam", "lr": 1e-3, "total_steps": 1_000_000}, CARTPOLE)
_register("cartpole-q-actor-critic", "The notes' actor-critic with an action-value critic Q_phi (expected SARSA).",
          {"algo": "td", "critic": "q", "num_envs": 16, "optimizer": "adam", "lr": 3e-4, "entropy": 0.01,
           "total_steps": 1_000_000},
          None)
_register("cartpole-a2c", "A2C (5-step returns, RMSprop as in the A3C paper, 16 batched envs) on CartPole-v1.",
          {"algo": "a2c", "num_envs": 16}, CARTPOLE)
_register("cartpole-ppo", "PPO (clipped surrogate, GAE; rl-zoo settings) on CartPole-v1.", PPO_CARTPOLE, CARTPOLE)
_register("acrobot-a2c", "A2C (8-step GAE 0.95, 16 envs, RMSprop, normalised observations) on Acrobot-v1.",
          A2C_ACROBOT, ACROBOT)
_register("acrobot-ppo", "PPO (GAE 0.94, 16 envs, normalised observations; rl-zoo settings) on Acrobot-v1.",
          PPO_ACROBOT, ACROBOT)
