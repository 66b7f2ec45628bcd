"""DQN: Bellman targets on a hand-built batch, the loss, the replay buffer, the Nature net (tier 1);
learning CartPole (tier 2)."""
import numpy as np
import torch
import torch.nn.functional as F

from dlnotes.rl.dqn import MLPQ, NatureQ, ReplayBuffer, bellman_target, dqn_loss

R = torch.tensor([1.0, 0.0, -1.0])
TERMINAL = torch.tensor([0.0, 1.0, 0.0])
NEXT_Q_TARGET = torch.tensor([[1.0, 3.0], [5.0, 2.0], [0.5, -1.0]])
NEXT_Q_ONLINE = torch.tensor([[2.0, 1.0], [0.0, 9.0], [-1.0, 4.0]])


def test_bellman_target_without_double_dqn():
    y = bellman_target(R, TERMINAL, NEXT_Q_TARGET, 0.5)
    # r + gamma max_a' Q^-(s', a'); nothing after a terminal step
    assert torch.allclose(y, torch.tensor([1 + 0.5 * 3, 0.0, -1 + 0.5 * 0.5]))


def test_bellman_target_with_double_dqn():
    y = bellman_target(R, TERMINAL, NEXT_Q_TARGET, 0.5, NEXT_Q_ONLINE)
    # the online net picks a* = (0, 1, 1), the target net scores it: Q^- = (1, ., -1)
    assert torch.allclose(y, torch.tensor([1 + 0.5 * 1, 0.0, -1 + 0.5 * -1]))


def test_dqn_loss_is_huber_on_the_chosen_action_and_targets_are_constants():
    torch.manual_seed(0)
    online, target = MLPQ(3, 2, hidden=8), MLPQ(3, 2, hidden=8)
    obs, nxt = torch.randn(5, 3), torch.randn(5, 3)
    action = torch.tensor([0, 1, 1, 0, 1])
    reward, terminal = torch.randn(5) * 3, torch.tensor([0.0, 0, 1, 0, 0])
    for double in (False, True):
        loss, q = dqn_loss(online, target, (obs, action, reward, nxt, terminal), 0.9, True, double)
        with torch.no_grad():
            y = bellman_target(reward, terminal, target(nxt), 0.9, online(nxt) if double else None)
        q_ref = online(obs)[torch.arange(5), action]
        assert torch.allclose(q, q_ref) and torch.allclose(loss, F.smooth_l1_loss(q_ref, y))
        online.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in target.parameters())
    mse, _ = dqn_loss(online, target, (obs, action, reward, nxt, terminal), 0.9, False, False)
    assert torch.allclose(mse, 0.5 * F.mse_loss(q_ref, bellman_target(reward, terminal, target(nxt).detach(), 0.9)))


def test_replay_buffer_ring_and_state_dict():
    buf = ReplayBuffer(5, (2,))
    for k in range(3):  # 6 transitions into 5 slots: the first is overwritten
        buf.add(np.full((2, 2), k, np.float32) + [[0], [0.5]], np.array([k, k]), np.ones(2), np.zeros((2, 2)),
                np.zeros(2))
    assert buf.size == 5 and buf.pos == 1
    assert buf.obs[0, 0] == 2.5 and buf.obs[1, 0] == 0.5
    other = ReplayBuffer(5, (2,))
    other.load_state_dict(buf.state_dict())
    assert np.array_equal(other.obs, buf.obs) and (other.size, other.pos) == (5, 1)


def test_stacked_buffer_rebuilds_next_frames():
    buf = ReplayBuffer(4, (4, 3, 3), np.uint8, stacked=True)
    frames = np.arange(6 * 9, dtype=np.uint8).reshape(6, 3, 3)
    obs, nxt = frames[None, 0:4], frames[None, 1:5]  # (1, 4, 3, 3), the next stack shifted by one frame
    buf.add(obs, np.array([1]), np.array([0.5]), nxt, np.array([0.0]))
    o, a, r, n, d = buf.sample(3, "cpu")
    assert torch.equal(n[0], torch.from_numpy(nxt[0])) and torch.equal(o[0], torch.from_numpy(obs[0]))


def test_nature_network_shapes():
    net = NatureQ(n_actions=6)
    out = net(torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8))
    assert out.shape == (2, 6)
    # conv 8224 + 32832 + 36928, fc 3136*512+512, out 512*6+6: Mnih et al.'s net with 6 actions
    assert sum(p.numel() for p in net.parameters()) == 1_687_206


def test_dqn_learns_cartpole(run_recipe):
    """Tier 2: 8k env steps lift the greedy return well above a random policy's ~22."""
    _, res = run_recipe("cartpole-dqn", preset="full", overrides=["total_steps=8000", "eval_every=100000",
                                                                  "final_episodes=10", "stop_return=0"])
    assert res["eval_return"] >= 100, res
