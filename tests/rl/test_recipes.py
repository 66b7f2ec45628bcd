"""Tier 3: every RL recipe runs --quick through the engine; resume mid-training; seeded runs repeat."""
import importlib.util

import pytest

from dlnotes.engine import execute
from dlnotes.engine.recipes import load_all

QUICK = ["cartpole-reinforce", "cartpole-reinforce-reward-to-go", "cartpole-reinforce-trajectory",
         "pendulum-reinforce", "cartpole-ars", "cartpole-random-search", "cartpole-es",
         "frozenlake4x4-qlearning", "frozenlake8x8-qlearning", "mountaincar-linear-q", "cartpole-dqn",
         "cartpole-actor-critic", "cartpole-q-actor-critic", "cartpole-a2c", "cartpole-ppo", "acrobot-a2c",
         "acrobot-ppo"]


def test_every_rl_recipe_is_covered():
    mine = {n for n, r in load_all().items() if r.fn.__module__.split(".")[-1] in
            ("reinforce", "random_search", "evolution", "qlearning", "linear_q", "dqn",
                                                   "actor_critic")}
    assert mine == set(QUICK) | {"pong-dqn"}


@pytest.mark.parametrize("name", QUICK)
def test_quick(run_recipe, name):
    run_dir, res = run_recipe(name)
    assert (run_dir / "result.json").exists() and (run_dir / "metrics.jsonl").exists()
    metric = "success_rate" if "frozenlake" in name else "eval_return"
    assert metric in res and res[metric] == res[metric]  # present and not NaN


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ale_py") is None, reason="ale-py not installed")
def test_pong_dqn_quick(run_recipe):
    _, res = run_recipe("pong-dqn")
    assert -21 <= res["eval_return"] <= 21 and res["grad_steps"] > 0


@pytest.mark.parametrize("name,stop", [("cartpole-dqn", 150), ("cartpole-reinforce", 7), ("cartpole-ppo", 6),
                                       ("acrobot-a2c", 20)])
def test_resume_mid_training_gives_the_uninterrupted_result(tmp_path, monkeypatch, name, stop):
    _, full = execute(name, preset="quick", runs_root=tmp_path / "a", quiet=True)
    monkeypatch.setenv("DLNOTES_STOP_AFTER", str(stop))
    with pytest.raises(KeyboardInterrupt):
        execute(name, preset="quick", runs_root=tmp_path / "b", quiet=True)
    monkeypatch.delenv("DLNOTES_STOP_AFTER")
    (run_dir,) = list((tmp_path / "b" / name).iterdir())
    _, resumed = execute(resume=run_dir, quiet=True)
    for key in ("eval_return", "env_steps"):
        assert resumed[key] == full[key], (key, resumed, full)


def test_two_runs_with_one_seed_are_identical(run_recipe):
    _, a = run_recipe("cartpole-dqn", seed=3)
    _, b = run_recipe("cartpole-dqn", seed=3)
    assert a["eval_return"] == b["eval_return"] and a["grad_steps"] == b["grad_steps"]
    _, c = run_recipe("cartpole-reinforce", seed=3)
    _, d = run_recipe("cartpole-reinforce", seed=3)
    assert c["eval_return"] == d["eval_return"] and c["env_steps"] == d["env_steps"]
