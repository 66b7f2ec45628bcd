"""Recurrent encoder-decoder translation, the notes' attempts 3 and 4 (Lecture 7), and decoding.

**Attempt 3: encoder-decoder.** A GRU *encoder* reads the source ``x_1..x_S`` and keeps only its
final state ``h_S``, the "global" context of the whole sentence. A GRU *decoder* starts from it and
emits the target one token at a time; the context is also fed to every decoder step and to the
output layer (Cho et al. 2014), so it is not forgotten::

    c = h_S,   s_0 = c,   s_i = GRU([e(y_{i-1}); c], s_{i-1}),   p(y_i) = softmax(W_o [s_i; c; e(y_{i-1})])

One vector must carry the whole sentence, and gradients reach early source words only through
the chain of encoder steps.

**Attempt 4: attention over all encoder states.** Keep every state ``h_j`` of a bidirectional GRU
(forward and backward halves concatenated) and let each decoder step compute "influence scores"
over them with the shallow additive network of Bahdanau et al. (2015)::

    alpha_ij = softmax_j( w^T tanh(W [h_j; s_{i-1}]) ),    c_i = sum_j alpha_ij h_j
    s_i = GRU([e(y_{i-1}); c_i], s_{i-1}),                 p(y_i) = softmax(W_o [s_i; c_i; e(y_{i-1})])

Padding positions of the source get ``alpha = 0``. The weights ``alpha`` show which source words
each output word attended to (:func:`plot_attention`).

**Decoding** (shared with the Transformer): :func:`greedy_decode` takes the arg-max token at each
step; :func:`beam_search` keeps the ``beam`` best prefixes by total log-probability, finished
hypotheses are ranked by log-probability divided by ``length**alpha``. Both work on any model that
offers ``start(src) -> state`` and ``step(tokens (N, t), state) -> (log_probs (N, V), state)``,
where ``state`` is a dict of tensors whose first dimension is N (beams are reordered with it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class GRUEncoder(nn.Module):
    """Embedding -> (bi)directional GRU over padded batches; returns all states and the final state."""

    def __init__(self, vocab: int, emb: int, hidden: int, bidirectional: bool, dropout: float, pad_id: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb, padding_idx=pad_id)
        self.rnn = nn.GRU(emb, hidden, batch_first=True, bidirectional=bidirectional)
        self.drop = nn.Dropout(dropout)
        self.pad_id = pad_id

    def forward(self, src: torch.Tensor):
        lengths = (src != self.pad_id).sum(1).cpu()
        e = self.drop(self.embed(src))  # (B, S, E)
        packed = pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)  # h: (dirs, B, H), the state at each sequence's true end
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])  # (B, S, dirs*H)
        return out, torch.cat(list(h), dim=-1)  # (B, S, dirs*H), (B, dirs*H)


class EncoderDecoderGRU(nn.Module):
    """Attempt 3: the decoder sees only the encoder's final state ``c`` (at every step)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, emb: int = 256, hidden: int = 512, dropout: float = 0.3,
                 pad_id: int = 0):
        super().__init__()
        self.encoder = GRUEncoder(src_vocab, emb, hidden, False, dropout, pad_id)
        self.embed = nn.Embedding(tgt_vocab, emb, padding_idx=pad_id)
        self.cell = nn.GRUCell(emb + hidden, hidden)
        self.out = nn.Linear(hidden + hidden + emb, tgt_vocab)
        self.drop = nn.Dropout(dropout)

    def start(self, src: torch.Tensor) -> dict:
        _, c = self.encoder(src)  # (B, H)
        return {"s": c, "c": c}

    def step(self, tokens: torch.Tensor, state: dict):
        """One decoder step from the last token of ``tokens`` (N, t); log-probs (N, V) and new state."""
        e = self.drop(self.embed(tokens[:, -1]))  # (N, E)
        s = self.cell(torch.cat([e, state["c"]], -1), state["s"])  # (N, H)
        logits = self.out(self.drop(torch.cat([s, state["c"], e], -1)))
        return F.log_softmax(logits.float(), -1), {"s": s, "c": state["c"]}

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V) for every position of ``tgt_in``."""
        state = self.start(src)
        e = self.drop(self.embed(tgt_in))  # (B, T, E)
        c, s, outs = state["c"], state["s"], []
        for t in range(tgt_in.shape[1]):
            s = self.cell(torch.cat([e[:, t], c], -1), s)
            outs.append(s)
        S = torch.stack(outs, 1)  # (B, T, H)
        return self.out(self.drop(torch.cat([S, c[:, None].expand_as(S), e], -1)))


class AdditiveAttention(nn.Module):
    """Bahdanau scores ``w^T tanh(W [h_j; s])`` -> masked softmax over source positions j.

    ``W [h_j; s] = W_h h_j + W_s s``: the encoder half ``W_h h`` does not change while decoding, so
    :meth:`keys` computes it once per sentence and every decoder step only adds ``W_s s``.
    """

    def __init__(self, enc_dim: int, dec_dim: int, attn_dim: int):
        super().__init__()
        self.W_h = nn.Linear(enc_dim, attn_dim, bias=False)
        self.W_s = nn.Linear(dec_dim, attn_dim, bias=False)
        self.w = nn.Linear(attn_dim, 1, bias=False)

    def keys(self, h: torch.Tensor) -> torch.Tensor:
        return self.W_h(h)  # (N, S, A)

    def forward(self, s: torch.Tensor, keys: torch.Tensor, src_pad: torch.Tensor) -> torch.Tensor:
        """s (N, D) decoder state, keys = W_h h (N, S, A), src_pad (N, S) True at padding -> alpha (N, S)."""
        scores = self.w(torch.tanh(keys + self.W_s(s)[:, None])).squeeze(-1)  # (N, S)
        return torch.softmax(scores.masked_fill(src_pad, float("-inf")), -1)


class AttentionGRU(nn.Module):
    """Attempt 4: bidirectional GRU encoder, GRU decoder with additive attention at every step."""

    def __init__(self, src_vocab: int, tgt_vocab: int, emb: int = 256, enc_hidden: int = 512,
                 dec_hidden: int = 512, attn_dim: int = 512, dropout: float = 0.3, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        self.encoder = GRUEncoder(src_vocab, emb, enc_hidden, True, dropout, pad_id)
        self.init_state = nn.Linear(2 * enc_hidden, dec_hidden)  # s_0 = tanh(W [h_fwd_S; h_bwd_1])
        self.attention = AdditiveAttention(2 * enc_hidden, dec_hidden, attn_dim)
        self.embed = nn.Embedding(tgt_vocab, emb, padding_idx=pad_id)
        self.cell = nn.GRUCell(emb + 2 * enc_hidden, dec_hidden)
        self.out = nn.Linear(dec_hidden + 2 * enc_hidden + emb, tgt_vocab)
        self.drop = nn.Dropout(dropout)

    def start(self, src: torch.Tensor) -> dict:
        h, final = self.encoder(src)  # (B, S, 2H), (B, 2H)
        return {"s": torch.tanh(self.init_state(final)), "h": h, "keys": self.attention.keys(h),
                "pad": src == self.pad_id}

    def _attend_and_step(self, e, s, h, keys, pad):
        alpha = self.attention(s, keys, pad)  # (N, S)
        c = torch.bmm(alpha[:, None], h).squeeze(1)  # (N, 2H): c_i = sum_j alpha_ij h_j
        s = self.cell(torch.cat([e, c], -1), s)  # (N, D)
        return s, c, alpha

    def step(self, tokens: torch.Tensor, state: dict, return_attention: bool = False):
        e = self.drop(self.embed(tokens[:, -1]))  # (N, E)
        s, c, alpha = self._attend_and_step(e, state["s"], state["h"], state["keys"], state["pad"])
        logp = F.log_softmax(self.out(self.drop(torch.cat([s, c, e], -1))).float(), -1)
        new = {**state, "s": s}
        if return_attention:
            new["alpha"] = alpha
        return logp, new

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        st = self.start(src)
        e = self.drop(self.embed(tgt_in))  # (B, T, E)
        s, outs = st["s"], []
        for t in range(tgt_in.shape[1]):
            s, c, _ = self._attend_and_step(e[:, t], s, st["h"], st["keys"], st["pad"])
            outs.append(torch.cat([s, c], -1))
        return self.out(self.drop(torch.cat([torch.stack(outs, 1), e], -1)))  # (B, T, V)


# ----------------------------------------------------------------------------- decoding
def _reorder(state: dict, index: torch.Tensor) -> dict:
    return {k: v.index_select(0, index) for k, v in state.items()}


@torch.no_grad()
def greedy_decode(model, src: torch.Tensor, bos: int, eos: int, max_len: int = 60,
                  return_attention: bool = False):
    """Arg-max decoding of a batch; returns token lists without BOS/EOS (and attention rows if asked)."""
    state = model.start(src)
    n = src.shape[0]
    tokens = torch.full((n, 1), bos, dtype=torch.long, device=src.device)
    done = torch.zeros(n, dtype=torch.bool, device=src.device)
    alphas = []
    for _ in range(max_len):
        if return_attention:
            logp, state = model.step(tokens, state, return_attention=True)
            alphas.append(state.pop("alpha"))
        else:
            logp, state = model.step(tokens, state)
        nxt = logp.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], 1)
        done |= nxt == eos
        if done.all():
            break
    out = [_strip(row, eos) for row in tokens[:, 1:].tolist()]
    if return_attention:
        return out, torch.stack(alphas, 1)  # (N, steps, S)
    return out


def _strip(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


@torch.no_grad()
def beam_search(model, src: torch.Tensor, bos: int, eos: int, beam: int = 5, max_len: int = 60,
                alpha: float = 1.0) -> list[list[int]]:
    """Batched beam search; the best finished hypothesis by ``log p / length**alpha`` per sentence."""
    b, k = src.shape[0], beam
    state = _reorder(model.start(src), torch.arange(b, device=src.device).repeat_interleave(k))
    tokens = torch.full((b * k, 1), bos, dtype=torch.long, device=src.device)
    scores = torch.zeros(b, k, device=src.device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one
    finished = torch.zeros(b * k, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(b * k, device=src.device)
    for _ in range(max_len):
        logp, state = model.step(tokens, state)  # (B*K, V)
        v = logp.shape[-1]
        # a finished hypothesis may only repeat EOS, at no cost, so its score is frozen
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, eos] = 0.0
        logp = torch.where(finished[:, None], frozen, logp)
        cand = (scores.view(-1, 1) + logp).view(b, k * v)
        top, idx = cand.topk(k, dim=1)  # (B, K)
        src_beam = (torch.arange(b, device=src.device)[:, None] * k + idx // v).view(-1)
        tok = (idx % v).view(-1)
        tokens = torch.cat([tokens[src_beam], tok[:, None]], 1)
        state = _reorder(state, src_beam)
        lengths = lengths[src_beam] + (~finished[src_beam]).float()
        finished = finished[src_beam] | (tok == eos)
        scores = top
        if finished.all():
            break
    normed = (scores.view(-1) / lengths.clamp(min=1) ** alpha).view(b, k)
    normed = torch.where(finished.view(b, k), normed, normed - 1e4)  # prefer finished hypotheses
    best = normed.argmax(1) + torch.arange(b, device=src.device) * k
    return [_strip(row, eos) for row in tokens[best, 1:].tolist()]


def plot_attention(alpha: torch.Tensor, src_tokens: list[str], out_tokens: list[str]):
    """Heat map of alpha (len(out) x len(src)): row i = where output word i looked in the source."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = alpha[: len(out_tokens), : len(src_tokens)].float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(0.45 * len(src_tokens) + 2, 0.45 * len(out_tokens) + 1.5))
    ax.imshow(a, cmap="viridis", vmin=0, vmax=max(a.max(), 1e-6))
    ax.set_xticks(range(len(src_tokens)))
    ax.set_xticklabels(src_tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(out_tokens)))
    ax.set_yticklabels(out_tokens, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    return fig
