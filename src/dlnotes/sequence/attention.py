"""Self-attention as Lecture 7 builds it, one step at a time.

1. Parameter-free self-attention over a set ``{x_1 .. x_n}`` of d-dimensional vectors::

       w_ij = x_i^T x_j,     W_ij = exp(w_ij) / sum_j exp(w_ij),     y_i = sum_j W_ij x_j

   Nothing is learned; the weights come from the inputs. Permuting the inputs permutes the
   outputs the same way (permutation equivariance).

2. Learned roles. Each x_i acts as query, key and value; give each role its own projection and
   scale the dot product by 1/sqrt(d) for numerical reasons::

       q_i = W_q x_i,  k_i = W_k x_i,  v_i = W_v x_i,   w_ij = q_i^T k_j / sqrt(d),   y_i = sum_j W_ij v_j

3. Multi-head attention. Heads r = 1..h each have their own W_q^r, W_k^r, W_v^r (of width
   d/h); the head outputs are concatenated and mixed by an output projection::

       y_i = W_y concat[y_i^1, ..., y_i^h]

   With ``key``/``value`` taken from another sequence (``memory``) the same layer is the
   cross-attention a decoder uses; with the queries from the decoder and keys/values from the
   encoder it is the "attention mechanism" of the recurrent translation models.

Masks (boolean, broadcast to ``(B, h, T_q, T_k)``; True means "may attend", as in
``torch.nn.functional.scaled_dot_product_attention``):

* causal mask ``j <= i`` for language models (no peeking at later tokens);
* key padding: ``key_padding_mask`` is (B, T_k) with True at *padding* positions (the convention of
  ``nn.MultiheadAttention``); those keys get weight zero.

:func:`attention` is the explicit softmax(QK^T/sqrt(d))V; :class:`MultiHeadAttention` uses it when
attention weights are asked for and otherwise :func:`scaled_dot_product`, which calls PyTorch's fused
``scaled_dot_product_attention`` (same numbers, less memory, faster) except where the explicit form is
faster. Tests check both against each other and against ``nn.MultiheadAttention`` with copied weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def simple_self_attention(x: torch.Tensor) -> torch.Tensor:
    """The notes' parameter-free self-attention: ``y_i = sum_j softmax_j(x_i^T x_j) x_j``.

    ``x`` is (..., n, d); returns the same shape.
    """
    w = x @ x.transpose(-2, -1)  # (..., n, n) raw weights w_ij = x_i . x_j
    W = torch.softmax(w, dim=-1)  # row-normalised
    return W @ x  # (..., n, d)


def causal_mask(t_q: int, t_k: int | None = None, device=None) -> torch.Tensor:
    """(T_q, T_k) boolean, True where query i may look at key j (j <= i, aligned at the end)."""
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, T) boolean, True at padding positions (the ``key_padding_mask`` convention)."""
    return tokens == pad_id


def combine_masks(attn_mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                  causal: bool = False, t_q: int = 0, t_k: int = 0, device=None) -> torch.Tensor | None:
    """One boolean "may attend" mask broadcastable to (B, h, T_q, T_k), or None if nothing is masked.

    ``attn_mask``: (T_q, T_k) or (B, h or 1, T_q, T_k), True = may attend (a float mask is added to
    the scores instead and must then be the only mask).
    ``key_padding_mask``: (B, T_k), True = padding.
    """
    mask = None
    if attn_mask is not None:
        if attn_mask.dtype != torch.bool:
            if key_padding_mask is not None or causal:
                raise ValueError("a float attn_mask cannot be combined with other masks; pass booleans")
            return attn_mask
        mask = attn_mask
    if causal:
        c = causal_mask(t_q, t_k, device=device)
        mask = c if mask is None else mask & c
    if key_padding_mask is not None:
        keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
        mask = keep if mask is None else mask & keep
    return mask


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              dropout_p: float = 0.0, training: bool = False, scale: float | None = None):
    """Explicit scaled dot-product attention; returns ``(output, weights)``.

    ``q`` is (..., T_q, d), ``k`` (..., T_k, d), ``v`` (..., T_k, d_v); ``mask`` boolean (True = may
    attend) or float (added to the scores). ``w_ij = q_i . k_j / sqrt(d)``, ``W = softmax_j(w)``,
    ``y_i = sum_j W_ij v_j``.
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # rows sum to one
    w = F.dropout(weights, dropout_p) if training and dropout_p > 0 else weights
    return w @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


def scaled_dot_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                       dropout_p: float = 0.0, is_causal: bool = False) -> torch.Tensor:
    """``softmax(QK^T / sqrt(d)) V`` by PyTorch's fused ``scaled_dot_product_attention``, or by :func:`attention`
    where that is faster: in bf16 on a CPU with gradients to compute. There the fused kernel's backward is several
    times slower than the explicit two matmuls at this library's sizes (AMD EPYC with AVX-512 BF16, 2 threads,
    forward and backward: 38.6 ms against 5.4 for the U-Net's (128, 4, 49, 16); 46.9 against 20.1 for a causal
    (32, 8, 128, 32)), which took the pixel U-Net's bf16 training step from 0.59 s to 0.43-0.48 s (GPT-2's,
    whose vocabulary dominates, stays at about 0.8 s either way). In fp32, or without gradients (sampling,
    evaluation), the fused kernel is as fast or faster and keeps the job. ``mask``: boolean, True = may attend;
    ``is_causal``: queries and keys aligned at the start, as the fused kernel's flag."""
    if torch.is_grad_enabled() and q.requires_grad and q.device.type == "cpu" and q.dtype == torch.bfloat16:
        if is_causal:  # the fused kernel's alignment (top-left), kept with any mask passed beside it
            c = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            mask = c if mask is None else mask & c
        return attention(q, k, v, mask, dropout_p, training=dropout_p > 0)[0]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)


class SelfAttention(nn.Module):
    """Single-head self-attention with learned W_q, W_k, W_v (step 2 of the notes).

    ``y_i = sum_j softmax_j(q_i . k_j / sqrt(d)) v_j`` with ``q = W_q x`` etc. No output projection.
    """

    def __init__(self, d: int, bias: bool = False):
        super().__init__()
        self.W_q = nn.Linear(d, d, bias=bias)
        self.W_k = nn.Linear(d, d, bias=bias)
        self.W_v = nn.Linear(d, d, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, causal: bool = False):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)  # (B, T, d) each
        m = combine_masks(mask, None, causal, x.shape[-2], x.shape[-2], x.device)
        return attention(q, k, v, m)[0]


class MultiHeadAttention(nn.Module):
    """Multi-head (self- or cross-) attention with an output projection.

    Args:
        d_model: width of the queries and of the output.
        n_heads: number of heads ``h``; each works in ``d_model / h`` dimensions, and the scores use
            ``1/sqrt(d_model / h)`` (the head width), as in "Attention is all you need".
        dropout: dropout on the attention weights (training only).
        bias: biases in the projections.
        kv_dim: width of the key/value source (``memory``) when it differs from ``d_model``, e.g.
            image features attending to text embeddings; default ``d_model``.
        fast: use :func:`scaled_dot_product` when the weights are not needed.

    Parameters: ``q_proj`` (d_model -> d_model), ``kv_proj`` (kv_dim -> 2 d_model, keys then values),
    ``out_proj`` (d_model -> d_model): the layout of ``nn.MultiheadAttention``'s ``in_proj_weight``
    split in two (see :meth:`load_torch_mha`).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, bias: bool = True,
                 kv_dim: int | None = None, fast: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dropout, self.fast = dropout, fast
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.kv_proj = nn.Linear(kv_dim or d_model, 2 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_head).transpose(1, 2)  # (B, h, T, d_head)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, *,
                key_padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                causal: bool = False, need_weights: bool = False):
        """Attend from ``x`` (B, T_q, d_model) to ``memory`` (B, T_k, kv_dim), or to ``x`` itself.

        Returns ``(y, weights)``: y is (B, T_q, d_model); weights (B, h, T_q, T_k) when
        ``need_weights`` else None.
        """
        src = x if memory is None else memory
        b, t_q, _ = x.shape
        t_k = src.shape[1]
        q = self._heads(self.q_proj(x))  # (B, h, T_q, d_head)
        k, v = self.kv_proj(src).split(self.d_model, dim=-1)
        k, v = self._heads(k), self._heads(v)  # (B, h, T_k, d_head)
        p = self.dropout if self.training else 0.0
        weights = None
        if self.fast and not need_weights:
            if causal and attn_mask is None and key_padding_mask is None and t_q == t_k:
                y = scaled_dot_product(q, k, v, dropout_p=p, is_causal=True)
            else:
                m = combine_masks(attn_mask, key_padding_mask, causal, t_q, t_k, x.device)
                y = scaled_dot_product(q, k, v, m, dropout_p=p)
        else:
            m = combine_masks(attn_mask, key_padding_mask, causal, t_q, t_k, x.device)
            y, weights = attention(q, k, v, m, dropout_p=p, training=self.training)
        y = y.transpose(1, 2).reshape(b, t_q, self.d_model)  # concat heads: (B, T_q, d_model)
        return self.out_proj(y), weights

    @torch.no_grad()
    def load_torch_mha(self, mha: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a ``nn.MultiheadAttention`` (same width, packed in_proj) into this layer."""
        d = self.d_model
        self.q_proj.weight.copy_(mha.in_proj_weight[:d])
        self.kv_proj.weight.copy_(mha.in_proj_weight[d:])
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.in_proj_bias is not None and self.q_proj.bias is not None:
            self.q_proj.bias.copy_(mha.in_proj_bias[:d])
            self.kv_proj.bias.copy_(mha.in_proj_bias[d:])
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self
