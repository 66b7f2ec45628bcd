"""REINFORCE: the estimator is unbiased on bandits with known gradients (tier 1); it learns CartPole (tier 2)."""
import numpy as np
import torch

from dlnotes.rl.reinforce import CategoricalPolicy, GaussianPolicy, pg_surrogate, pg_weights


def mc_gradient(params, logp, weights):
    """Gradient of the expected reward estimated by REINFORCE = minus the surrogate's gradient."""
    mask = torch.ones_like(weights)
    loss = pg_surrogate(logp[None], weights[None], mask[None])
    return [-g for g in torch.autograd.grad(loss, params)]


def test_reinforce_unbiased_on_categorical_bandit():
    torch.manual_seed(0)
    logits = torch.tensor([0.5, -0.3, 0.1, 0.0], requires_grad=True)
    r = torch.tensor([1.0, 3.0, -2.0, 0.5])
    pi = torch.softmax(logits, 0).detach()
    true = pi * (r - (pi * r).sum())  # d/dlogits sum_a pi_a r_a
    dist = torch.distributions.Categorical(logits=logits)
    M = 200_000
    a = dist.sample((M,))
    for b in (0.0, 10.0):  # a constant baseline leaves the expectation unchanged
        dist = torch.distributions.Categorical(logits=logits)
        (g,) = mc_gradient([logits], dist.log_prob(a), r[a] - b)
        se = ((r[a] - b).abs().max() / M ** 0.5).item()
        assert torch.allclose(g, true, atol=5 * se), (g, true)
    # and a wrong estimator (no log-derivative: weights on probabilities) is detectably off
    probs = torch.softmax(logits, 0)
    (g_bad,) = torch.autograd.grad((probs[a] * r[a]).mean(), [logits])
    assert (g_bad + true).abs().max() > 0.05


def test_reinforce_unbiased_for_gaussian_policy():
    torch.manual_seed(1)
    pol = GaussianPolicy(1, 1, hidden=4, log_std=-0.3)
    c = 1.5
    obs = torch.zeros(100_000, 1)
    d = pol.dist(obs)
    a = d.sample()
    mu, sigma = pol.greedy(obs[:1]).item(), pol.log_std.exp().item()
    reward = -((a[:, 0] - c) ** 2)  # J = -((mu - c)^2 + sigma^2)
    bias = pol.net[-1].bias
    g_bias, g_logstd = mc_gradient([bias, pol.log_std], d.log_prob(a), reward - reward.mean())
    assert abs(g_bias.item() - (-2 * (mu - c))) < 0.05 * (1 + abs(mu - c))
    assert abs(g_logstd.item() - (-2 * sigma ** 2)) < 0.05


def test_pg_weights_estimators():
    rng = np.random.default_rng(0)
    mask = np.ones((5, 2))
    mask[3:, 1] = 0
    dones = np.zeros((5, 2))
    dones[4, 0] = dones[2, 1] = 1
    batch = {"rewards": rng.normal(size=(5, 2)) * mask, "mask": mask, "dones": dones}
    traj = pg_weights(batch, 0.9, "trajectory")
    assert np.allclose(traj[:, 0], traj[0, 0]) and np.allclose(traj[3:, 1], 0)
    rtg = pg_weights(batch, 0.9, "reward_to_go")
    assert np.allclose(rtg[0], traj[0])  # reward-to-go from step 0 is the whole return
    assert np.allclose(rtg[4, 0], batch["rewards"][4, 0])
    base = pg_weights(batch, 0.9, "baseline", values=np.ones((5, 2)))
    assert np.allclose(base, (rtg - 1) * mask)


def test_categorical_policy_greedy_is_argmax():
    pol = CategoricalPolicy(4, 3, hidden=8)
    obs = torch.randn(10, 4)
    assert torch.equal(pol.greedy(obs), pol.dist(obs).probs.argmax(-1))


def test_reinforce_with_baseline_learns_cartpole(run_recipe):
    """Tier 2: 12 updates of 16 episodes lift the greedy return far above a random policy's ~22."""
    _, res = run_recipe("cartpole-reinforce", preset="full",
                        overrides=["updates=12", "eval_every=100", "eval_episodes=10", "final_episodes=10",
                                   "stop_return=0"])
    assert res["eval_return"] >= 150, res
