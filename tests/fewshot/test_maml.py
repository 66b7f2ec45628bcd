"""MAML: the second-order meta-gradient against finite differences; first order differs."""
import torch
from torch import nn

from dlnotes.fewshot.maml import MAMLNet, adapt, meta_loss


def _tiny_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    tasks = []
    for _ in range(2):
        xs, xq = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
        tasks.append((xs, torch.randint(0, 2, (6,)), xq, torch.randint(0, 2, (6,))))
    return model, tasks


def _meta_grad(model, tasks, first_order, steps=2, alpha=0.5):
    model.zero_grad()
    loss, _ = meta_loss(model, tasks, alpha, steps, first_order)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_second_order_meta_gradient_equals_finite_differences():
    model, tasks = _tiny_problem()
    g2 = _meta_grad(model, tasks, first_order=False)
    params = list(model.parameters())
    fd, eps = [], 1e-6
    for p in params:
        for i in range(p.numel()):
            orig = p.data.view(-1)[i].item()
            vals = []
            for sign in (1, -1):
                p.data.view(-1)[i] = orig + sign * eps
                vals.append(meta_loss(model, tasks, 0.5, 2, False)[0].item())
            p.data.view(-1)[i] = orig
            fd.append((vals[0] - vals[1]) / (2 * eps))
    fd = torch.tensor(fd, dtype=torch.float64)
    assert torch.allclose(g2, fd, atol=1e-7, rtol=1e-5), (g2 - fd).abs().max()
    g1 = _meta_grad(model, tasks, first_order=True)
    assert (g1 - fd).abs().max() > 1e-3  # the first-order approximation is not the true gradient


def test_first_order_gradient_is_the_query_gradient_at_the_adapted_weights():
    model, tasks = _tiny_problem()
    g1 = _meta_grad(model, tasks[:1], first_order=True, steps=1)
    xs, ys, xq, yq = tasks[0]
    phi = adapt(model, dict(model.named_parameters()), xs, ys, 0.5, 1, first_order=True)
    phi = {k: v.detach().requires_grad_() for k, v in phi.items()}
    loss = nn.functional.cross_entropy(torch.func.functional_call(model, phi, (xq,)), yq)
    ref = torch.autograd.grad(loss, list(phi.values()))
    assert torch.allclose(g1, torch.cat([r.flatten() for r in ref]))


def test_inner_step_is_plain_gradient_descent():
    model, tasks = _tiny_problem()
    xs, ys, _, _ = tasks[0]
    phi = dict(model.named_parameters())
    phi1 = adapt(model, phi, xs, ys, alpha=0.3, steps=1)
    loss = nn.functional.cross_entropy(model(xs), ys)
    grads = torch.autograd.grad(loss, list(phi.values()))
    for (k, p), g in zip(phi.items(), grads):
        assert torch.allclose(phi1[k], p - 0.3 * g)


def test_maml_adaptation_lowers_support_loss_on_the_conv_net():
    torch.manual_seed(0)
    net = MAMLNet(n_way=5)
    xs, ys = torch.rand(5, 1, 28, 28), torch.arange(5)
    phi = dict(net.named_parameters())
    before = nn.functional.cross_entropy(net(xs), ys)
    after = nn.functional.cross_entropy(torch.func.functional_call(net, adapt(net, phi, xs, ys, 0.05, 3), (xs,)), ys)
    assert after < before
