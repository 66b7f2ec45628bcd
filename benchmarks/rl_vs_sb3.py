"""Side by side: wall-clock seconds and env steps to a mean evaluation return of 475 on CartPole-v1
(-100 on Acrobot-v1).

Ours (dlnotes.rl) against stable-baselines3 with the rl-baselines3-zoo hyperparameters, on the same
machine in the same process, alternating per seed so that load on a shared machine hits both.
Both sides evaluate the greedy policy on ``--eval-episodes`` episodes of a separate gymnasium env
every ``--eval-every`` env steps and stop at the first evaluation >= 475; the clock includes those
evaluations and stops there (SB3: ``EvalCallback`` + ``StopTrainingOnRewardThreshold``; ours: the
recipe's ``seconds_to_target``). Both run with one torch thread.

Pairs: ``dqn`` (our cartpole-dqn vs SB3 DQN), ``pg`` (our REINFORCE with baseline vs SB3 A2C and
PPO, the nearest SB3 policy-gradient methods), and the actor-critic pairs ``a2c``, ``ppo`` (CartPole)
and ``acrobot-a2c``, ``acrobot-ppo`` (our recipe vs the same SB3 algorithm with the zoo settings).
A run that never reaches the threshold counts as infinity.

    python benchmarks/rl_vs_sb3.py --algos dqn --seeds 0 1 2
    python benchmarks/rl_vs_sb3.py --algos a2c ppo acrobot-a2c acrobot-ppo --seeds 0 1 2
    python benchmarks/rl_vs_sb3.py --merge results/*.jsonl     # summary of earlier partial runs
    python benchmarks/rl_vs_sb3.py --algos dqn --set hidden=64   # one of our config fields changed

The last line printed is one JSON object: per algorithm, our and SB3's median seconds and steps
to 475, and the ratio ours / SB3 of the median seconds.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time

import torch

ZOO = {  # rl-baselines3-zoo hyperparameters, keyed by (algorithm, env)
    ("DQN", "CartPole-v1"): dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
                                 gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                                 exploration_fraction=0.16, exploration_final_eps=0.04,
                                 policy_kwargs=dict(net_arch=[256, 256])),
    ("PPO", "CartPole-v1"): dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                                 learning_rate=lambda p: 1e-3 * p, clip_range=lambda p: 0.2 * p),
    ("A2C", "CartPole-v1"): dict(ent_coef=0.0),
    ("PPO", "Acrobot-v1"): dict(n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0),
    ("A2C", "Acrobot-v1"): dict(ent_coef=0.0),
}
N_ENVS = {("DQN", "CartPole-v1"): 1, ("PPO", "CartPole-v1"): 8, ("A2C", "CartPole-v1"): 8,
          ("PPO", "Acrobot-v1"): 16, ("A2C", "Acrobot-v1"): 16}
BUDGET = {("DQN", "CartPole-v1"): 50_000, ("PPO", "CartPole-v1"): 100_000, ("A2C", "CartPole-v1"): 500_000,
          ("PPO", "Acrobot-v1"): 1_000_000, ("A2C", "Acrobot-v1"): 500_000}
NORMALIZE = {"Acrobot-v1"}  # the zoo normalises observations (VecNormalize, rewards not) on Acrobot


def run_sb3(algo: str, env_id: str, seed: int, eval_every: int, eval_episodes: int, threshold: float) -> dict:
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    key = (algo, env_id)
    env = make_vec_env(env_id, n_envs=N_ENVS[key], seed=seed)
    eval_env = make_vec_env(env_id, n_envs=1, seed=seed + 10_000)
    if env_id in NORMALIZE:  # EvalCallback copies the training statistics into the eval wrapper
        env = VecNormalize(env, norm_reward=False)
        eval_env = VecNormalize(eval_env, norm_reward=False, training=False)
    model = getattr(sb3, algo)("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **ZOO[key])
    stop = StopTrainingOnRewardThreshold(reward_threshold=threshold, verbose=0)
    cb = EvalCallback(eval_env, callback_on_new_best=stop, eval_freq=max(eval_every // N_ENVS[key], 1),
                      n_eval_episodes=eval_episodes, deterministic=True, verbose=0)
    t0 = time.perf_counter()
    model.learn(BUDGET[key], callback=cb)
    seconds = time.perf_counter() - t0
    reached = cb.best_mean_reward >= threshold
    return {"side": "sb3", "algo": algo, "env": env_id, "seed": seed, "reached": bool(reached),
            "seconds": seconds if reached else math.inf, "steps": model.num_timesteps if reached else math.inf,
            "best_eval": float(cb.best_mean_reward), "total_seconds": seconds}


def run_ours(recipe_name: str, seed: int, eval_every: int, eval_episodes: int, threshold: float,
             extra: list[str] = ()) -> dict:
    from dlnotes.engine import execute

    over = [f"eval_episodes={eval_episodes}", f"stop_return={threshold}", "final_episodes=20", *extra]
    if recipe_name.startswith(("acrobot-", "cartpole-a", "cartpole-ppo")):
        over.append("stop_at_target=true")
    if recipe_name != "cartpole-reinforce":  # (REINFORCE evaluates every few updates, not env steps)
        over.append(f"eval_every={eval_every}")
    with tempfile.TemporaryDirectory() as tmp:
        _, res = execute(recipe_name, seed=seed, overrides=over, runs_root=tmp, quiet=True)
    reached = res["steps_to_target"] >= 0
    return {"side": "ours", "algo": recipe_name, "seed": seed, "reached": bool(reached),
            "seconds": res["seconds_to_target"] if reached else math.inf,
            "steps": res["steps_to_target"] if reached else math.inf, "final_eval": res["eval_return"],
            "total_seconds": res["train_s"]}


PAIRS = {  # key: (our recipe, env, SB3 algorithms it is compared with)
    "dqn": ("cartpole-dqn", "CartPole-v1", ["DQN"]),
    "pg": ("cartpole-reinforce", "CartPole-v1", ["A2C", "PPO"]),
    "a2c": ("cartpole-a2c", "CartPole-v1", ["A2C"]),
    "ppo": ("cartpole-ppo", "CartPole-v1", ["PPO"]),
    "acrobot-a2c": ("acrobot-a2c", "Acrobot-v1", ["A2C"]),
    "acrobot-ppo": ("acrobot-ppo", "Acrobot-v1", ["PPO"]),
}
THRESHOLD = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0}


def summarize(rows: list[dict]) -> dict:
    out = {}
    for key, (ours_name, env_id, sb3_algos) in PAIRS.items():
        mine = [r for r in rows if r["side"] == "ours" and r["algo"] == ours_name]
        if not mine:
            continue
        entry = {"ours": ours_name, "seeds": len(mine),
                 "ours_median_s": statistics.median(r["seconds"] for r in mine),
                 "ours_median_steps": statistics.median(r["steps"] for r in mine),
                 "ours_reached": sum(r["reached"] for r in mine)}
        for algo in sb3_algos:
            theirs = [r for r in rows if r["side"] == "sb3" and r["algo"] == algo
                      and r.get("env", "CartPole-v1") == env_id]
            if not theirs:
                continue
            s = statistics.median(r["seconds"] for r in theirs)
            entry[f"sb3_{algo}_median_s"] = s
            entry[f"sb3_{algo}_median_steps"] = statistics.median(r["steps"] for r in theirs)
            entry[f"sb3_{algo}_reached"] = sum(r["reached"] for r in theirs)
            entry[f"ratio_vs_{algo}"] = entry["ours_median_s"] / s if math.isfinite(s) else None
        out[key] = entry
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algos", nargs="+", default=["dqn"], choices=sorted(PAIRS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--eval-every", type=int, default=5000, help="env steps between evaluations (zoo: 5000)")
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--threshold", type=float, help="return to reach (default: 475 CartPole, -100 Acrobot)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of our recipe's config (repeatable), as `dlnotes run --set`")
    ap.add_argument("--out", help="append one JSON line per run to this file")
    ap.add_argument("--merge", nargs="*", help="only summarise rows from these JSONL files")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[dict] = []
    if args.merge is not None:
        for path in args.merge:
            rows += [json.loads(ln) for ln in open(path) if ln.strip()]
    else:
        for seed in args.seeds:
            for key in args.algos:
                ours_name, env_id, sb3_algos = PAIRS[key]
                thr = THRESHOLD[env_id] if args.threshold is None else args.threshold
                jobs = [lambda: run_ours(ours_name, seed, args.eval_every, args.eval_episodes, thr, args.set)]
                jobs += [lambda a=a: run_sb3(a, env_id, seed, args.eval_every, args.eval_episodes, thr)
                         for a in sb3_algos]
                if seed % 2:  # alternate who goes first
                    jobs.reverse()
                for job in jobs:
                    row = job()
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(json.dumps(row) + "\n")
    print(json.dumps(summarize(rows)))


if __name__ == "__main__":
    main()
