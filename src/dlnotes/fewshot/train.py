"""Episodic training and evaluation shared by the metric-based few-shot methods.

A method is an ``nn.Module`` with three methods:

* ``embed(x (B, 1, H, W)) -> (B, ...)``: the embedding ``f_theta`` applied to each image;
* ``scores(zs (N, K, ...), zq (M, ...)) -> (M, N)``: how strongly each query matches each class;
* ``loss(scores (M, N), y (M,)) -> scalar``: the method's training loss on an episode.

``train_episodic`` draws one training episode per step (supports and queries embedded in one
batch), minimises the loss with Adam and a step decay, and ``evaluate_model`` reports the test
accuracy and 95% CI of every N-way K-shot setting over ``eval_episodes`` episodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engine import Run
from .episodes import (EpisodeSampler, FewShotData, embed_all, episode_images, evaluate_embeddings,
                       omniglot_splits, query_labels, setting_key)


@dataclass
class EpisodicConfig:
    n_train_chars: int = 1200  # characters for training (the rest are test characters)
    train_classes: int = 0  # use only the first N training classes (0: all 4800)
    test_classes: int = 0  # use only the first N test classes (0: all 1692)
    train_way: int = 60  # N of the training episodes (Snell et al. train with more ways than test)
    train_shot: int = 5  # K of the training episodes
    train_query: int = 5  # queries per class in a training episode
    episodes: int = 6000  # training episodes (optimizer steps)
    lr: float = 1e-3  # Adam learning rate
    lr_halve_every: int = 2000  # halve the learning rate every this many episodes
    eval_settings: str = "5-1,5-5,20-1,20-5"  # N-K test settings
    eval_episodes: int = 1000  # test episodes per setting
    eval_query: int = 15  # queries per class in a test episode
    log_every: int = 25  # steps between logged training losses
    ckpt_every: int = 500  # steps between checkpoints


def parse_settings(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        n, k = item.strip().split("-")
        out.append((int(n), int(k)))
    return out


def load_data(cfg) -> tuple[FewShotData, FewShotData]:
    train, test, _ = omniglot_splits(n_train_chars=cfg.n_train_chars)
    if cfg.train_classes:
        # a spread of characters and rotations rather than the first alphabets only
        g = torch.Generator().manual_seed(0)
        train = train.subset(torch.randperm(train.n_classes, generator=g)[: cfg.train_classes].sort().values)
    if cfg.test_classes:
        g = torch.Generator().manual_seed(1)
        test = test.subset(torch.randperm(test.n_classes, generator=g)[: cfg.test_classes].sort().values)
    return train, test


def episode_scores(model, xs: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """Embed supports and queries in one batch, then score: ``(N*Q, N)``."""
    n, k = xs.shape[:2]
    z = model.embed(torch.cat([xs.flatten(0, 1), xq.flatten(0, 1)]))  # (N*K + N*Q, ...)
    zs = z[: n * k].reshape(n, k, *z.shape[1:])  # (N, K, ...)
    return model.scores(zs, z[n * k:])  # (N*Q, N)


def fit(cfg, run: Run, model: torch.nn.Module, step_loss, unit: str = "ep") -> float:
    """Adam with a step decay on ``step_loss(step) -> (loss, accuracy)`` for ``cfg.episodes`` steps,
    with logging, checkpoints and resumption; returns seconds per step."""
    model.to(run.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg.lr_halve_every), gamma=0.5)
    run.watch(model=model, optimizer=opt, scheduler=sched)
    start = run.restore()
    model.train()
    acc_sum, loss_sum, count = 0.0, 0.0, 0
    for step in run.steps(cfg.episodes, unit=unit):
        with run.autocast():
            loss, acc = step_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item()
        acc_sum += float(acc)
        count += 1
        if (step + 1) % cfg.log_every == 0 or step == cfg.episodes - 1:
            run.log(step, loss=loss_sum / count, train_acc=acc_sum / count, lr=sched.get_last_lr()[0])
            acc_sum, loss_sum, count = 0.0, 0.0, 0
        else:
            run.log_check(step, loss=loss.item())
    run.checkpoint()
    return run.elapsed / max(1, cfg.episodes - start)


def train_episodic(cfg: EpisodicConfig, run: Run, model: torch.nn.Module, train: FewShotData) -> float:
    """Train ``model`` on episodes from ``train`` with its own ``loss``; returns seconds per episode."""
    seed = torch.initial_seed()  # the run's --seed: episodes are a function of (seed, step)
    sampler = EpisodeSampler(train.n_classes, train.n_drawings, min(cfg.train_way, train.n_classes),
                             cfg.train_shot, cfg.train_query, seed=seed)
    y = query_labels(sampler.n_way, cfg.train_query, run.device)

    def step_loss(step):
        xs, xq = episode_images(train, *sampler.episode(step), device=run.device)
        s = episode_scores(model, xs, xq).float()  # (N*Q, N)
        return model.loss(s, y), (s.argmax(-1) == y).float().mean().item()

    return fit(cfg, run, model, step_loss)


@torch.no_grad()
def evaluate_model(cfg, run: Run, model: torch.nn.Module, test: FewShotData) -> dict[str, float]:
    """Accuracy and 95% CI per setting: ``accuracy_5way1shot``, ``ci95_5way1shot``, ...;
    ``accuracy`` is the first setting's."""
    model.eval()
    z = embed_all(model.embed, test, device=run.device)  # (C, D, ...)
    out: dict[str, float] = {}
    for i, (n, k) in enumerate(parse_settings(cfg.eval_settings)):
        if n > test.n_classes:
            continue
        r = evaluate_embeddings(model.scores, z.to(run.device), n, k, cfg.eval_query, cfg.eval_episodes)
        key = setting_key(n, k)
        out[f"accuracy_{key}"], out[f"ci95_{key}"] = r["accuracy"], r["ci95"]
        if i == 0:
            out["accuracy"] = r["accuracy"]
        run.print(f"{key}: {100 * r['accuracy']:.2f} +- {100 * r['ci95']:.2f}% over {r['episodes']} episodes")
    out["eval_episodes"] = cfg.eval_episodes
    model.train()
    return out
