"""Vanishing and exploding gradients, and the two fixes the notes give (Lecture 6,
"Backpropagation through time" and "Stabilizing RNN training").

BPTT multiplies one Jacobian per step: for the notes' scalar RNN,
``dh_t/dh_{t-1} = sigma'(.) w``, so ``||dL/dh_{T-k}||`` behaves like a geometric series in k
that explodes when the factor exceeds one and vanishes when it is below. This recipe

1. measures ``||dL_T / dh_{T-k}||`` for k = 0..T-1 through our own cells
   (:mod:`dlnotes.sequence.rnn`) for a vanilla RNN at small and large recurrent weight scales, a
   GRU and an LSTM, and plots it against k on a log scale;
2. trains vanilla RNN, GRU and LSTM character models with and without gradient clipping
   (``g <- alpha g / ||g||``) under the same SGD budget and reports each validation loss
   (or that the run diverged).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..engine import NonFiniteLoss, Run, recipe
from .rnn import Cell
from .rnn_lm import CharConfig, train_lm


def hidden_grad_norms(kind: str, hidden: int = 64, steps: int = 100, scale: float = 1.0,
                      batch: int = 16, seed: int = 0) -> torch.Tensor:
    """``||dL/dh_{T-k}||`` for k = 0..steps-1, averaged over a batch of random inputs.

    ``L`` depends only on the last hidden state (``L = sum h_T``), so the norm at lag ``k``
    is exactly the product of the ``k`` step Jacobians applied to ``dL/dh_T``. ``scale``
    multiplies the recurrent matrix ``W`` (weight_hh) at initialisation.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cell = Cell(kind, hidden, hidden)
    with torch.no_grad():
        cell.weight_hh.copy_(torch.randn(cell.weight_hh.shape, generator=g) * scale / hidden ** 0.5)
    x = torch.randn(steps, batch, hidden, generator=g)
    h = torch.zeros(batch, hidden)
    state = (h, h.clone()) if kind == "lstm" else h
    hs = []
    for t in range(steps):
        state = cell(x[t], state)
        hcur = state[0] if kind == "lstm" else state
        hcur.retain_grad()
        hs.append(hcur)
    hs[-1].sum().backward()
    norms = torch.stack([hs[steps - 1 - k].grad.norm(dim=1).mean() for k in range(steps)])
    return norms.detach()


@dataclass
class StudyConfig:
    corpus: str = "shakespeare"  # shakespeare | builtin-chars
    steps_back: int = 100  # lags in the gradient-norm plot
    train_epochs: float = 0.5  # training budget per cell/clipping pair
    hidden: int = 128  # hidden units of the trained models
    lr: float = 1.0  # SGD learning rate (large enough for clipping to matter)
    clip: float = 1.0  # clipping threshold alpha for the clipped runs


@recipe("rnn-gradient-study", lecture=6, section="Backpropagation through time; stabilizing RNN training",
        config=StudyConfig, datasets=("shakespeare",),
        presets={"quick": {"corpus": "builtin-chars", "train_epochs": 0.05, "steps_back": 40, "hidden": 48}})
def rnn_gradient_study(cfg: StudyConfig, run: Run) -> dict[str, float]:
    """Vanilla RNN vs GRU vs LSTM, with and without clipping; gradient norm against steps back."""
    import matplotlib.pyplot as plt

    curves = {
        "rnn, W scale 0.5": hidden_grad_norms("rnn", steps=cfg.steps_back, scale=0.5),
        "rnn, W scale 3": hidden_grad_norms("rnn", steps=cfg.steps_back, scale=3.0),
        "gru": hidden_grad_norms("gru", steps=cfg.steps_back, scale=1.0),
        "lstm": hidden_grad_norms("lstm", steps=cfg.steps_back, scale=1.0),
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, norms in curves.items():
        ax.semilogy(range(len(norms)), norms.clamp_min(1e-30), label=name)
    ax.set_xlabel("time steps back k")
    ax.set_ylabel("||dL/dh_{T-k}||")
    ax.set_title("Gradient norm through time (at initialisation)")
    ax.legend()
    ax.grid(alpha=0.3)
    run.save_figure("gradient_vs_steps_back", fig)
    result = {f"grad_ratio_{k.split(',')[0].replace(' ', '')}{'_big' if '3' in k else ''}":
              float(v[-1] / v[0]) for k, v in curves.items()}

    base = CharConfig(corpus=cfg.corpus, hidden=cfg.hidden, emb=32, layers=1, optimizer="sgd", lr=cfg.lr,
                      lr_decay=1.0, epochs=cfg.train_epochs, bptt=50, batch_size=32, ckpt_every=0,
                      eval_batch=16, sample_chars=0)
    rows = ["| cell | clipping | validation loss (nats/char) |", "|---|---|---|"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in ("rnn", "gru", "lstm"):
        for clip in (0.0, cfg.clip):
            tag = f"{kind}-{'clip' if clip else 'noclip'}"
            child = Run(run.dir / tag, device=str(run.device), quiet=True, meta={"recipe": tag})
            try:
                res = train_lm(replace(base, cell=kind, clip=clip), child)
                val = res.get("val_loss", float("nan"))
            except NonFiniteLoss:
                val = float("inf")  # diverged: the notes' exploding-gradient failure
            child.close()
            result[f"val_loss_{kind}_{'clip' if clip else 'noclip'}"] = val
            rows.append(f"| {kind} | {'alpha=' + str(clip) if clip else 'none'} | "
                        f"{'diverged' if val == float('inf') else f'{val:.3f}'} |")
            from ..engine.plots import read_metrics
            s = read_metrics(child.dir / "metrics.jsonl").get("loss")
            if s:
                ax.plot(*s, label=tag, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    run.save_figure("clipping_comparison", fig)
    run.save_text("study_table.md", "\n".join(rows) + "\n")
    run.print("\n".join(rows))
    return result
