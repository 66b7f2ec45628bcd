"""Model-agnostic meta-learning (Finn, Abbeel and Levine 2017), as the notes write it.

Base weights ``phi``. For each task ``T_j`` of a meta-batch, adapt with ``k`` inner steps of
gradient descent on the task's support set::

    phi_j <- phi - alpha grad_phi L(f_phi, T_j)          (iterated k times)

then the meta-loss is the adapted models' loss on the tasks' query sets,
``M(phi) = sum_j L(f_{phi_j}, T_j)`` (we average over the meta-batch, which only rescales beta), and::

    phi <- phi - beta grad_phi M(phi)
        = phi - beta sum_j grad_phi L(phi - alpha grad_phi L(f_phi, T_j))

The gradient of the meta-loss goes *through* the inner gradient steps: a gradient of a gradient.
We evaluate ``f`` with explicit weights via ``torch.func.functional_call`` and build the inner
step with ``torch.autograd.grad(..., create_graph=True)``, so backpropagating the meta-loss gives
the exact second-order meta-gradient. ``first_order=True`` drops the second-order terms (the inner
gradients are treated as constants, ``d phi_j / d phi = I``): the first-order approximation.

The network is the 4-block conv net with batch norm using each batch's own statistics (no running
averages, as in Finn et al.'s code), followed by a linear N-way classifier.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..engine import Run, Target, recipe
from ..eval.fewshot import mean_ci95
from ..nn.backbones import Conv4
from .episodes import EpisodeSampler, FewShotData, episode_images, query_labels
from .train import fit, load_data, parse_settings


class MAMLNet(nn.Module):
    def __init__(self, n_way: int, width: int = 64):
        super().__init__()
        self.encoder = Conv4(width=width, track_running_stats=False)
        self.head = nn.Linear(self.encoder.out_dim, n_way)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))  # (B, n_way) logits


def adapt(model: nn.Module, phi: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor, alpha: float,
          steps: int, first_order: bool = False, loss_fn=F.cross_entropy) -> dict[str, torch.Tensor]:
    """``steps`` inner updates ``phi_j <- phi_j - alpha grad L(f_{phi_j}, support)``; returns ``phi_j``.

    With ``first_order=False`` the updates stay on the autograd graph (``create_graph=True``)."""
    for _ in range(steps):
        loss = loss_fn(functional_call(model, phi, (xs,)), ys)
        grads = torch.autograd.grad(loss, list(phi.values()), create_graph=not first_order)
        phi = {name: p - alpha * g for (name, p), g in zip(phi.items(), grads)}
    return phi


def meta_loss(model: nn.Module, tasks, alpha: float, steps: int, first_order: bool = False,
              loss_fn=F.cross_entropy) -> tuple[torch.Tensor, float]:
    """``M(phi) = mean_j L(f_{phi_j}, T_j^query)`` over ``tasks = [(xs, ys, xq, yq), ...]``;
    ``phi`` is the model's own parameters, so ``M.backward()`` leaves the meta-gradient in ``.grad``.
    Also returns the adapted models' mean query accuracy."""
    phi = dict(model.named_parameters())
    total, correct = 0.0, 0.0
    for xs, ys, xq, yq in tasks:
        phi_j = adapt(model, phi, xs, ys, alpha, steps, first_order, loss_fn)
        out = functional_call(model, phi_j, (xq,))
        total = total + loss_fn(out, yq)
        if out.dim() == 2 and out.shape[-1] > 1:
            correct += (out.argmax(-1) == yq).float().mean().item()
    return total / len(tasks), correct / len(tasks)


def task_tensors(data: FewShotData, sampler: EpisodeSampler, step: int, device="cpu"):
    """One task as flat ``(xs (N*K, 1, H, W), ys, xq (N*Q, 1, H, W), yq)`` with labels 0..N-1."""
    xs, xq = episode_images(data, *sampler.episode(step), device=device)
    n, k, q = xs.shape[0], xs.shape[1], xq.shape[1]
    return xs.flatten(0, 1), query_labels(n, k, device), xq.flatten(0, 1), query_labels(n, q, device)


def evaluate_maml(model: MAMLNet, test: FewShotData, n_way: int, k_shot: int, n_query: int, episodes: int,
                  alpha: float, steps: int, device="cpu", seed: int = 12345) -> dict[str, float]:
    """Adapt a copy of ``phi`` on each test episode's supports, score its queries; mean +- 95% CI."""
    sampler = EpisodeSampler(test.n_classes, test.n_drawings, n_way, k_shot, n_query, seed)
    phi = {k: v.detach().requires_grad_() for k, v in model.named_parameters()}
    accs = torch.empty(episodes, dtype=torch.float64)
    for e in range(episodes):
        xs, ys, xq, yq = task_tensors(test, sampler, e, device)
        phi_j = adapt(model, phi, xs, ys, alpha, steps, first_order=True)
        with torch.no_grad():
            accs[e] = (functional_call(model, phi_j, (xq,)).argmax(-1) == yq).double().mean()
    mean, half = mean_ci95(accs)
    return {"accuracy": mean, "ci95": half}


@dataclass
class MAMLConfig:
    n_train_chars: int = 1200  # characters for training (the rest are test characters)
    train_classes: int = 0  # use only the first N training classes (0: all 4800)
    test_classes: int = 0  # use only the first N test classes (0: all 1692)
    n_way: int = 5  # N of the training and test tasks
    k_shot: int = 1  # supports per class in training tasks
    n_query: int = 1  # queries per class in training tasks (Finn et al.: as many as supports)
    meta_batch: int = 32  # tasks per meta-update (Finn et al.: 32)
    inner_lr: float = 0.4  # alpha (Finn et al. Omniglot: 0.4)
    inner_steps: int = 1  # k inner gradient steps while meta-training
    test_inner_steps: int = 3  # inner steps at test time
    first_order: bool = False  # drop the second-order terms of the meta-gradient
    episodes: int = 6500  # meta-iterations (Finn et al. ran 60000; this fits ~80 min on 2 cores)
    lr: float = 1e-3  # beta: Adam learning rate of the meta-update
    lr_halve_every: int = 2500  # halve beta every this many meta-iterations (Finn et al.: constant)
    width: int = 64  # filters per conv block
    eval_settings: str = "5-1,5-5"  # N-K test settings (N must equal n_way: the head has N outputs)
    eval_episodes: int = 1000  # test episodes per setting
    eval_query: int = 15  # queries per class at test
    log_every: int = 10  # meta-iterations between logged losses
    ckpt_every: int = 200  # meta-iterations between checkpoints


def run_maml(cfg: MAMLConfig, run: Run) -> dict[str, float]:
    train, test = load_data(cfg)
    model = MAMLNet(cfg.n_way, cfg.width)
    sampler = EpisodeSampler(train.n_classes, train.n_drawings, cfg.n_way, cfg.k_shot, cfg.n_query,
                             seed=torch.initial_seed())

    def step_loss(step):
        tasks = [task_tensors(train, sampler, step * cfg.meta_batch + j, run.device) for j in range(cfg.meta_batch)]
        return meta_loss(model, tasks, cfg.inner_lr, cfg.inner_steps, cfg.first_order)

    sec = fit(cfg, run, model, step_loss, unit="meta-it")
    result: dict[str, float] = {}
    for i, (n, k) in enumerate(parse_settings(cfg.eval_settings)):
        if n != cfg.n_way:
            continue
        r = evaluate_maml(model, test, n, k, cfg.eval_query, cfg.eval_episodes, cfg.inner_lr,
                          cfg.test_inner_steps, run.device)
        key = f"{n}way{k}shot"
        result[f"accuracy_{key}"], result[f"ci95_{key}"] = r["accuracy"], r["ci95"]
        if i == 0:
            result["accuracy"] = r["accuracy"]
        run.print(f"{key}: {100 * r['accuracy']:.2f} +- {100 * r['ci95']:.2f}%")
    result["sec_per_meta_iteration"] = sec
    result["throughput"] = cfg.meta_batch / sec  # tasks per second
    return result


QUICK = {"train_classes": 200, "test_classes": 60, "meta_batch": 4, "n_query": 5, "episodes": 12, "inner_lr": 0.1,
         "eval_settings": "5-1", "eval_episodes": 30, "eval_query": 5, "log_every": 4, "ckpt_every": 0}


@recipe("omniglot-maml", lecture=13, section="Model-agnostic meta learning (MAML)", config=MAMLConfig,
        datasets=("omniglot",), presets={"quick": QUICK},
        target=Target("accuracy", ">=", 0.97, "5-way 1-shot, second order; Finn et al. 2017: 98.7"))
def omniglot_maml(cfg: MAMLConfig, run: Run) -> dict[str, float]:
    """MAML (second-order, k inner steps, meta-batch of tasks) on Omniglot 5-way 1-shot."""
    return run_maml(cfg, run)
