"""Recurrent cells written from the notes' equations (Lecture 6, "Recurrent architectures").

Vanilla RNN (the notes' state update, with tanh as the squashing ``sigma``)::

    h_t = tanh(U x_t + W h_{t-1} + b)

GRU, with the notes' reset gate ``r`` and update gate ``z``::

    r_t = sigmoid(U_r x_t + W_r h_{t-1}),   z_t = sigmoid(U_z x_t + W_z h_{t-1})
    h~_t = tanh(U x_t + W (h_{t-1} * r_t))                       (reset_after=False, the notes)
    h~_t = tanh(U x_t + r_t * (W h_{t-1} + b_hn))                (reset_after=True, cuDNN / torch)
    h_t = z_t * h_{t-1} + (1 - z_t) * h~_t

The two candidate forms differ only in whether the reset gate multiplies ``h`` before or after
the matrix ``W``; PyTorch (and cuDNN) use the second, so ``reset_after=True`` is the default and
is the one checked against ``torch.nn.GRU``.

LSTM (Hochreiter & Schmidhuber, with a forget gate), input ``i``, forget ``f``, cell ``g``,
output ``o``::

    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (U x_t + W h_{t-1} + b)
    c_t = f * c_{t-1} + i * g,    h_t = o * tanh(c_t)

Weights use PyTorch's layout (``weight_ih`` stacks the gate matrices ``U``, ``weight_hh`` the
``W``), so parameters copy one-to-one to and from ``torch.nn.RNN/GRU/LSTM``. :class:`Recurrent`
stacks cells into a multi-layer, optionally bidirectional network over ``(T, B, C)`` inputs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


class Cell(nn.Module):
    """One time step of an RNN, GRU or LSTM; ``forward(x, state) -> new state``."""

    def __init__(self, kind: str, input_size: int, hidden_size: int, reset_after: bool = True):
        super().__init__()
        if kind not in GATES:
            raise ValueError(f"cell kind must be one of {list(GATES)}, not {kind!r}")
        self.kind, self.hidden_size, self.reset_after = kind, hidden_size, reset_after
        g = GATES[kind]
        self.weight_ih = nn.Parameter(torch.empty(g * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(g * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(g * hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, state):
        gi = x @ self.weight_ih.T + self.bias_ih  # U x_t: (B, G*H)
        if self.kind == "rnn":
            return torch.tanh(gi + state @ self.weight_hh.T + self.bias_hh)
        if self.kind == "gru":
            h = state
            u_r, u_z, u_n = gi.chunk(3, dim=1)
            w_r, w_z, w_n = self.weight_hh.chunk(3, dim=0)
            b_r, b_z, b_n = self.bias_hh.chunk(3)
            r = torch.sigmoid(u_r + h @ w_r.T + b_r)
            z = torch.sigmoid(u_z + h @ w_z.T + b_z)
            if self.reset_after:
                cand = torch.tanh(u_n + r * (h @ w_n.T + b_n))
            else:
                cand = torch.tanh(u_n + (h * r) @ w_n.T + b_n)
            return z * h + (1 - z) * cand
        h, c = state
        i, f, g, o = (gi + h @ self.weight_hh.T + self.bias_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class Recurrent(nn.Module):
    """Multi-layer, optionally bidirectional stack of :class:`Cell` over (T, B, C) sequences.

    ``forward(x, state)`` returns ``(outputs (T, B, dirs*H), final state)``; the state layout
    matches torch: ``h`` of shape (layers*dirs, B, H) and, for the LSTM, ``(h, c)``.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, reset_after: bool = True):
        super().__init__()
        self.kind, self.hidden_size, self.num_layers = kind, hidden_size, num_layers
        self.dirs = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.cells = nn.ModuleList()
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * self.dirs
            for _ in range(self.dirs):
                self.cells.append(Cell(kind, in_size, hidden_size, reset_after))

    def init_state(self, batch: int, device=None):
        h = torch.zeros(self.num_layers * self.dirs, batch, self.hidden_size, device=device)
        return (h, h.clone()) if self.kind == "lstm" else h

    def forward(self, x: torch.Tensor, state=None):
        T, B, _ = x.shape
        if state is None:
            state = self.init_state(B, x.device)
        finals_h, finals_c = [], []
        inp = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.dirs):
                idx = layer * self.dirs + d
                cell = self.cells[idx]
                s = (state[0][idx], state[1][idx]) if self.kind == "lstm" else state[idx]
                steps = range(T - 1, -1, -1) if d == 1 else range(T)
                ys = [None] * T
                for t in steps:  # the unrolled recurrence: same weights at every step
                    s = cell(inp[t], s)
                    ys[t] = s[0] if self.kind == "lstm" else s
                outs.append(torch.stack(ys))
                finals_h.append(s[0] if self.kind == "lstm" else s)
                if self.kind == "lstm":
                    finals_c.append(s[1])
            inp = torch.cat(outs, dim=-1) if self.dirs == 2 else outs[0]
            if layer < self.num_layers - 1:
                inp = self.dropout(inp)
        h = torch.stack(finals_h)
        return inp, ((h, torch.stack(finals_c)) if self.kind == "lstm" else h)


def torch_module(kind: str, *args, **kwargs) -> nn.Module:
    """The fused PyTorch module with the same interface: nn.RNN (tanh), nn.GRU or nn.LSTM."""
    return {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](*args, **kwargs)


@torch.no_grad()
def copy_to_torch(ours: Recurrent, ref: nn.Module) -> None:
    """Copy :class:`Recurrent` weights into a fused torch module of the same shape."""
    for layer in range(ours.num_layers):
        for d in range(ours.dirs):
            cell = ours.cells[layer * ours.dirs + d]
            sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, name + sfx).copy_(getattr(cell, name))


def clip_grad_norm(parameters, max_norm: float) -> float:
    """The notes' clipping ``g <- alpha g / ||g||`` when the global norm ``||g||`` exceeds alpha.

    Returns the norm before clipping. (Same result as ``torch.nn.utils.clip_grad_norm_``.)
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if max_norm > 0 and norm > max_norm:
        for g in grads:
            g.mul_(max_norm / (norm + 1e-6))
    return float(norm)
