"""Actor-critic: GAE against a naive loop, the TD special case, the Q critic, observation
normalisation, and (tier 2) A2C solving CartPole within a minute."""
import numpy as np
import pytest
import torch

from dlnotes.engine import execute
from dlnotes.rl.actor_critic import ActorCritic, ActorCriticConfig, RunningNorm, a2c_update, gae


def naive_gae(r, v, d, last, gamma, lam):
    """A_t = sum_k (gamma lam)^k delta_{t+k}, the sum cut after the step that ends an episode."""
    T, N = r.shape
    vals = np.vstack([v, last[None]])
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, coef = 0.0, 1.0
            for k in range(t, T):
                nxt = 0.0 if d[k, n] else vals[k + 1, n]
                total += coef * (r[k, n] + gamma * nxt - vals[k, n])
                if d[k, n]:
                    break
                coef *= gamma * lam
            adv[t, n] = total
    return adv


@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0])
def test_gae_matches_the_naive_sum(lam):
    rng = np.random.default_rng(0)
    T, N = 9, 4
    r, v, last = rng.normal(size=(T, N)), rng.normal(size=(T, N)), rng.normal(size=N)
    d = (rng.random((T, N)) < 0.2).astype(float)
    adv, ret = gae(*(torch.tensor(x) for x in (r, v, d, last)), 0.97, lam)
    np.testing.assert_allclose(adv.numpy(), naive_gae(r, v, d, last, 0.97, lam), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ret.numpy(), adv.numpy() + v)


def test_gae_with_lambda_one_gives_discounted_n_step_returns():
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.zeros(3, 1)
    _, ret = gae(r, v, torch.zeros(3, 1), torch.tensor([10.0]), 0.5, 1.0)
    assert ret[0, 0].item() == pytest.approx(1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 10)


def test_td_update_moves_the_critic_toward_the_bellman_target_and_the_actor_along_delta():
    torch.manual_seed(0)
    net = ActorCritic(3, 2, hidden=16)
    cfg = ActorCriticConfig(algo="td", optimizer="adam", lr=1e-2, max_grad_norm=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    obs = torch.randn(1, 5, 3)
    act = torch.zeros(1, 5, dtype=torch.long)
    rew = torch.full((1, 5), 3.0)  # far above V ~ 0: delta > 0, so action 0 gets likelier
    done = torch.ones(1, 5)
    p0 = net(obs[0])[0].softmax(-1)[:, 0]
    for _ in range(20):
        a2c_update(net, opt, cfg, obs, act, rew, done, torch.zeros(5))
    logits, v = net(obs[0])
    assert (logits.softmax(-1)[:, 0] > p0).all()
    assert (v - 3.0).abs().max() < (torch.zeros(5) - 3.0).abs().max()  # closer to the target r = 3


def test_q_critic_learns_action_values():
    torch.manual_seed(0)
    net = ActorCritic(2, 2, hidden=16, q_critic=True)
    cfg = ActorCriticConfig(algo="td", critic="q", lr=1e-2, max_grad_norm=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    obs = torch.randn(1, 8, 2)
    act = torch.tensor([[0, 1] * 4])
    rew = torch.where(act == 0, 1.0, -1.0).float()  # terminal step: Q(s,0) -> 1, Q(s,1) -> -1
    for _ in range(300):
        a2c_update(net, opt, cfg, obs, act, rew, torch.ones(1, 8), torch.zeros(8))
    q = net(obs[0])[1]
    assert (q[::2, 0] - 1).abs().max() < 0.15 and (q[1::2, 1] + 1).abs().max() < 0.15


def test_running_norm_matches_the_batch_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(600, 3))
    norm = RunningNorm(3)
    for chunk in np.split(x, 6):
        norm.update(chunk)
    np.testing.assert_allclose(norm.mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), x.var(0), rtol=1e-4)


def test_bad_algo_is_refused_with_the_valid_choices(tmp_path):
    with pytest.raises(ValueError, match="td, a2c or ppo"):
        execute("cartpole-a2c", preset="quick", overrides=["algo=sac"], runs_root=tmp_path, quiet=True)


def test_a2c_solves_cartpole_within_a_minute(run_recipe):
    """Tier 2: the full cartpole-a2c recipe (stops at the first evaluation >= 475)."""
    _, res = run_recipe("cartpole-a2c", preset="full", overrides=["total_steps=150000", "final_episodes=20"])
    assert res["steps_to_target"] > 0 and res["eval_return"] >= 400, res
    assert res["train_s"] < 60
