"""Tier 1: returns, reward-to-go, the numpy CartPole and rollouts against naive references."""
import gymnasium as gym
import numpy as np

from dlnotes.rl.envs import AcrobotVec, CartPoleVec, PendulumVec, collect_episodes, discounted_return, evaluate, reward_to_go


def naive_reward_to_go(rewards, dones, gamma, last=None):
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            g, k = 0.0, t
            while True:
                g += gamma ** (k - t) * rewards[k, n]
                if dones[k, n]:
                    break
                k += 1
                if k == T:
                    if last is not None:
                        g += gamma ** (k - t) * last[n]
                    break
            out[t, n] = g
    return out


def test_reward_to_go_matches_naive_loop():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(17, 5))
    d = (rng.random((17, 5)) < 0.2).astype(float)
    np.testing.assert_allclose(reward_to_go(r, d, 0.9), naive_reward_to_go(r, d, 0.9), rtol=1e-12)
    last = rng.normal(size=5)
    np.testing.assert_allclose(reward_to_go(r, d, 0.97, last), naive_reward_to_go(r, d, 0.97, last), rtol=1e-12)


def test_discounted_return_of_whole_trajectory():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(12, 3))
    lengths = [12, 5, 1]
    mask = np.array([[t < L for L in lengths] for t in range(12)], dtype=float)
    want = [sum(0.95 ** t * r[t, n] for t in range(L)) for n, L in enumerate(lengths)]
    np.testing.assert_allclose(discounted_return(r * mask, mask, 0.95), want, rtol=1e-12)
    # the return of the whole episode is the reward-to-go at its first step
    dones = np.zeros_like(mask)
    for n, L in enumerate(lengths):
        dones[L - 1, n] = 1
    np.testing.assert_allclose(reward_to_go(r * mask, dones, 0.95)[0], want, rtol=1e-12)


def match_gymnasium(vec, env_id: str, steps: int, actions, atol: float, resync: bool = False) -> int:
    """Step our batched env and ``vec.num_envs`` gymnasium envs with the same actions from the same
    states; every step must give the same observation (to ``atol``), reward and end flags. Ended
    episodes restart both sides from gymnasium's next start state. ``resync`` copies gymnasium's state
    after every step (no drift from its partly float32 arithmetic). Returns the episodes ended."""
    envs = [gym.make(env_id) for _ in range(vec.num_envs)]
    for i, e in enumerate(envs):
        e.reset(seed=i)
    vec.reset(states=np.array([e.unwrapped.state for e in envs]))
    ends = 0
    for step in range(steps):
        a = actions(step)
        _, r, term, trunc, final = vec.step(a)
        for i, e in enumerate(envs):
            go, gr, gterm, gtrunc, _ = e.step(a[i] if a.ndim > 1 else int(a[i]))
            np.testing.assert_allclose(final[i], go, atol=atol)
            np.testing.assert_allclose(r[i], gr, rtol=1e-5)
            assert gterm == term[i] and gtrunc == trunc[i]
            if gterm or gtrunc:
                ends += 1
                e.reset(seed=100 + step)
                vec.state[i], vec.t[i] = e.unwrapped.state, 0
            elif resync:
                vec.state[i] = e.unwrapped.state
    return ends


def test_numpy_cartpole_matches_gymnasium_step_by_step():
    rng = np.random.default_rng(2)
    assert match_gymnasium(CartPoleVec(3), "CartPole-v1", 300, lambda t: rng.integers(0, 2, 3), 1e-6) > 3


def test_numpy_acrobot_matches_gymnasium_step_by_step():
    rng = np.random.default_rng(5)
    ends = match_gymnasium(AcrobotVec(4), "Acrobot-v1", 1200,
                           lambda t: rng.integers(0, 3, 4) if t % 200 < 150 else np.full(4, 2), 1e-5)
    assert ends >= 4  # episodes ended (time limit or swing-up) and restarted in step


def test_numpy_pendulum_matches_gymnasium_step_by_step():
    rng = np.random.default_rng(6)  # torques beyond the bounds too: both sides clip
    ends = match_gymnasium(PendulumVec(3), "Pendulum-v1", 450,
                           lambda t: rng.uniform(-3, 3, size=(3, 1)).astype(np.float32), 1e-5, resync=True)
    assert ends == 6  # two 200-step time limits per env


def test_cartpole_time_limit_truncates_at_500():
    vec = CartPoleVec(1)
    vec.reset(states=np.zeros((1, 4)))
    vec.step(np.array([0]))
    vec.state[:] = 0.0
    vec.t[:] = 499  # the next step is the 500th
    _, _, term, trunc, _ = vec.step(np.array([1]))
    assert trunc[0] and not term[0] and vec.t[0] == 0


def test_collect_episodes_masks_one_episode_per_env():
    env = CartPoleVec(6)
    batch = collect_episodes(env, lambda o: np.zeros(len(o), dtype=np.int64), seed=0)
    lengths = batch["mask"].sum(0)
    assert (lengths >= 8).all() and (lengths < 15).all()  # always pushing left falls in about 9-10 steps
    np.testing.assert_array_equal(batch["rewards"].sum(0), lengths)  # CartPole pays 1 per step
    np.testing.assert_array_equal(batch["dones"].sum(0), np.ones(6))
    assert batch["steps"] == lengths.sum()


def test_evaluate_counts_fixed_episodes_per_env():
    mean, std = evaluate(lambda o: np.zeros(len(o), dtype=np.int64), "CartPole-v1", episodes=8, num_envs=4)
    assert 8 <= mean <= 12 and std < 3
