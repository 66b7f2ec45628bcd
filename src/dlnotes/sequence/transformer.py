"""The Transformer of Lecture 7, from positions and blocks up to an encoder-decoder and a GPT.

Read top-down: positional information -> feed-forward MLP -> block -> encoder / decoder ->
encoder-decoder (translation) -> GPT (causal language model).

**Positions.** Self-attention is permutation-equivariant, so "Jack gave water to Jill" and "Jill
gave water to Jack" would get the same features. A position vector ``p_t`` is added to each token
embedding, either learned (one embedding per position) or fixed, sinusoidal::

    p_t[2k] = sin(omega_k t),   p_t[2k+1] = cos(omega_k t),   omega_k = 1 / 10000^(2k/d)

(the notes' ``omega_k = 1/10000^(k/d)`` with sine/cosine pairs sharing a frequency, as in
"Attention is all you need"). The values stay in [-1, 1] for any t and d.

**Block.** Self-attention + residual, LayerNorm, MLP + residual, LayerNorm (post-norm, as the
notes draw it and as the original paper does)::

    x <- LN(x + Att(x));   x <- LN(x + MLP(x))

or the pre-norm variant GPT-2 and most later models use (trains more easily when deep; needs one
final LayerNorm after the stack)::

    x <- x + Att(LN(x));   x <- x + MLP(LN(x))

A decoder block inserts cross-attention (queries from the decoder, keys/values from the encoder's
output ``memory``) between the two. Everything is feed-forward: no recurrence, so depth does not
depend on the sequence length.

The blocks are general (any width, heads, activation, masks, cross-attention source width) and are
reused by other models (BERT/GPT-2/ELMo, CLIP's text tower, text-conditioned diffusion). Inputs are
always batch-first ``(B, T, d_model)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention, padding_mask


# ----------------------------------------------------------------------------- positions
def sinusoidal_encoding(n_positions: int, d: int) -> torch.Tensor:
    """(n_positions, d) table: ``p_t[2k] = sin(t / 10000^(2k/d))``, ``p_t[2k+1] = cos(same)``."""
    t = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (N, 1)
    omega = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)  # (ceil(d/2),)
    pe = torch.zeros(n_positions, d)
    pe[:, 0::2] = torch.sin(t * omega)
    pe[:, 1::2] = torch.cos(t * omega[: d // 2])
    return pe


class SinusoidalPositions(nn.Module):
    """Adds the fixed sinusoidal encoding: ``x_t + p_t`` (no parameters)."""

    def __init__(self, d_model: int, max_len: int = 4096):
        super().__init__()
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        t = x.shape[1]
        if offset + t > self.pe.shape[0]:
            raise ValueError(f"sequence of {offset + t} positions exceeds max_len={self.pe.shape[0]}")
        return x + self.pe[offset: offset + t].to(x.dtype)  # (B, T, C)


class LearnedPositions(nn.Module):
    """Adds a learned embedding per position: ``x_t + P[t]``."""

    def __init__(self, d_model: int, max_len: int = 512, init_std: float = 0.02):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=init_std)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        t = x.shape[1]
        if offset + t > self.max_len:
            raise ValueError(f"sequence of {offset + t} positions exceeds max_len={self.max_len}")
        pos = torch.arange(offset, offset + t, device=x.device)
        return x + self.embedding(pos)  # (B, T, C)


class NoPositions(nn.Module):
    """Identity: the model sees a set, not a sequence (for the equivariance demonstration)."""

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return x


def make_positions(kind: str, d_model: int, max_len: int) -> nn.Module:
    """``"sinusoidal"`` | ``"learned"`` | ``"none"``."""
    if kind == "sinusoidal":
        return SinusoidalPositions(d_model, max_len)
    if kind == "learned":
        return LearnedPositions(d_model, max_len)
    if kind == "none":
        return NoPositions()
    raise ValueError(f"positions must be sinusoidal, learned or none, not {kind!r}")


# ----------------------------------------------------------------------------- block
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
                "silu": nn.SiLU}


class FeedForward(nn.Module):
    """Position-wise MLP: ``Linear(d, d_ff) -> activation -> Linear(d_ff, d) -> dropout``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu",
                 bias: bool = True):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, not {activation!r}")
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.act = _ACTIVATIONS[activation]()
        self.proj = nn.Linear(d_ff, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))  # (B, T, C)


class TransformerBlock(nn.Module):
    """One Transformer block: self-attention, optional cross-attention, MLP; each with a residual
    connection and a LayerNorm placed after (post-norm) or before (pre-norm) the sublayer.

    Args:
        d_model: token width. n_heads: attention heads. d_ff: MLP hidden width (default 4 d_model).
        dropout: on attention weights and on each sublayer's output before the residual sum.
        norm_first: False = post-norm ``x <- LN(x + f(x))`` (the notes, Vaswani et al.);
            True = pre-norm ``x <- x + f(LN(x))`` (GPT-2).
        causal: self-attention only looks at earlier positions (decoders, language models).
        cross_attention: add a cross-attention sublayer over ``memory`` (decoder blocks).
        kv_dim: width of ``memory`` if not d_model.
        activation: relu | gelu | gelu_tanh | silu. bias: biases in the linear layers and LayerNorms.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = False, causal: bool = False, cross_attention: bool = False,
                 kv_dim: int | None = None, activation: str = "gelu", bias: bool = True,
                 layer_norm_eps: float = 1e-5):
        super().__init__()
        self.norm_first, self.causal = norm_first, causal
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias)
        self.norm_attn = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.cross_attn = self.norm_cross = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias, kv_dim=kv_dim)
            self.norm_cross = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.mlp = FeedForward(d_model, d_ff or 4 * d_model, dropout, activation, bias)
        self.norm_mlp = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.drop = nn.Dropout(dropout)

    def _residual(self, x, norm, fn):
        if self.norm_first:
            return x + fn(norm(x))  # pre-norm
        return norm(x + fn(x))  # post-norm

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, *,
                key_padding_mask: torch.Tensor | None = None, memory_padding_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, causal: bool | None = None) -> torch.Tensor:
        """x: (B, T, d_model); memory: (B, S, kv_dim) for cross-attention; padding masks True at pads;
        ``attn_mask`` boolean (T, T) or (B, h, T, T), True = may attend. Returns (B, T, d_model)."""
        causal = self.causal if causal is None else causal

        def sa(h):
            return self.drop(self.self_attn(h, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                            causal=causal)[0])

        x = self._residual(x, self.norm_attn, sa)
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this block has cross-attention: pass memory=(B, S, kv_dim)")

            def ca(h):
                return self.drop(self.cross_attn(h, memory, key_padding_mask=memory_padding_mask)[0])

            x = self._residual(x, self.norm_cross, ca)
        return self._residual(x, self.norm_mlp, self.mlp)


# ----------------------------------------------------------------------------- stacks
class TransformerEncoder(nn.Module):
    """``n_layers`` blocks on embeddings (B, T, d_model) -> (B, T, d_model); no embeddings inside.

    Pre-norm stacks end with a LayerNorm (``final_norm`` defaults to ``norm_first``). ``causal=True``
    gives a decoder-only stack (GPT, CLIP's text tower). Other keywords go to :class:`TransformerBlock`.
    """

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = False, causal: bool = False, activation: str = "gelu", bias: bool = True,
                 final_norm: bool | None = None, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.layers = nn.ModuleList([
            TransformerBlock(d_model, n_heads, d_ff, dropout, norm_first, causal, False, None, activation, bias,
                             layer_norm_eps) for _ in range(n_layers)])
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, causal: bool | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask, attn_mask=attn_mask, causal=causal)
        return self.norm(x)


class TransformerDecoder(nn.Module):
    """``n_layers`` decoder blocks: causal self-attention, cross-attention over ``memory``, MLP."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 norm_first: bool = False, activation: str = "gelu", bias: bool = True, kv_dim: int | None = None,
                 causal: bool = True, final_norm: bool | None = None, layer_norm_eps: float = 1e-5):
        super().__init__()
        self.layers = nn.ModuleList([
            TransformerBlock(d_model, n_heads, d_ff, dropout, norm_first, causal, True, kv_dim, activation, bias,
                             layer_norm_eps) for _ in range(n_layers)])
        final_norm = norm_first if final_norm is None else final_norm
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor, memory: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                memory_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, memory, key_padding_mask=key_padding_mask, memory_padding_mask=memory_padding_mask)
        return self.norm(x)


# ----------------------------------------------------------------------------- encoder-decoder
class EncoderDecoder(nn.Module):
    """The full Transformer for translation: source embedding + positions -> encoder; target
    embedding + positions -> decoder (causal self-attention, cross-attention to the encoder) ->
    linear layer to target-vocabulary logits. Embeddings are scaled by sqrt(d_model).

    ``pad_id`` marks padding in both languages (masked as keys everywhere).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 256, n_heads: int = 8,
                 n_encoder: int = 3, n_decoder: int = 3, d_ff: int = 512, dropout: float = 0.1,
                 norm_first: bool = False, positions: str = "sinusoidal", max_len: int = 256, pad_id: int = 0,
                 activation: str = "relu", share_target_embedding: bool = True):
        super().__init__()
        self.pad_id, self.d_model = pad_id, d_model
        self.src_embed = nn.Embedding(src_vocab, d_model, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model, padding_idx=pad_id)
        self.src_pos = make_positions(positions, d_model, max_len)
        self.tgt_pos = make_positions(positions, d_model, max_len)
        self.drop = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(n_encoder, d_model, n_heads, d_ff, dropout, norm_first,
                                          activation=activation)
        self.decoder = TransformerDecoder(n_decoder, d_model, n_heads, d_ff, dropout, norm_first,
                                          activation=activation)
        # shared: logits = h E^T + b with the target embedding E (Press & Wolf), E stored once
        self.generator = None if share_target_embedding else nn.Linear(d_model, tgt_vocab)
        self.generator_bias = nn.Parameter(torch.zeros(tgt_vocab)) if share_target_embedding else None
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        with torch.no_grad():
            self.src_embed.weight.normal_(0, d_model ** -0.5)
            self.tgt_embed.weight.normal_(0, d_model ** -0.5)
            self.src_embed.weight[pad_id].zero_()
            self.tgt_embed.weight[pad_id].zero_()

    def encode(self, src: torch.Tensor):
        """src (B, S) token ids -> (memory (B, S, d), source padding mask (B, S))."""
        pad = padding_mask(src, self.pad_id)
        x = self.drop(self.src_pos(self.src_embed(src) * math.sqrt(self.d_model)))  # (B, S, d)
        return self.encoder(x, key_padding_mask=pad), pad

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_pad: torch.Tensor,
               last_only: bool = False) -> torch.Tensor:
        """tgt (B, T) ids (starting with BOS) -> next-token logits (B, T, V_tgt), or (B, 1, V_tgt) for
        the last position only when ``last_only`` (decoding needs no more)."""
        y = self.drop(self.tgt_pos(self.tgt_embed(tgt) * math.sqrt(self.d_model)))  # (B, T, d)
        h = self.decoder(y, memory, key_padding_mask=padding_mask(tgt, self.pad_id), memory_padding_mask=src_pad)
        if last_only:
            h = h[:, -1:]
        if self.generator is None:
            return F.linear(h, self.tgt_embed.weight, self.generator_bias)  # (B, T, V)
        return self.generator(h)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, src_pad = self.encode(src)
        return self.decode(tgt_in, memory, src_pad)


# ----------------------------------------------------------------------------- GPT
class GPT(nn.Module):
    """Decoder-only causal language model: token + learned position embeddings -> pre-norm causal
    blocks -> LayerNorm -> logits tied to the token embedding (nanoGPT's layout).

    ``forward(idx, targets)`` returns ``(logits (B, T, V), loss or None)``; the loss is the mean
    next-token cross-entropy in nats. Weights ~ N(0, 0.02); each block's output projections are
    scaled by 1/sqrt(2 n_layers) so the residual stream's variance does not grow with depth.
    """

    def __init__(self, vocab_size: int, context: int, n_layers: int = 4, n_heads: int = 4, d_model: int = 128,
                 dropout: float = 0.0, bias: bool = False, positions: str = "learned", norm_first: bool = True,
                 activation: str = "gelu", tie_weights: bool = True, d_ff: int | None = None):
        super().__init__()
        self.context, self.n_layers, self.d_model = context, n_layers, d_model
        self.tok_embed = nn.Embedding(vocab_size, d_model)
        self.pos = make_positions(positions, d_model, context)
        self.drop = nn.Dropout(dropout)
        self.blocks = TransformerEncoder(n_layers, d_model, n_heads, d_ff, dropout, norm_first, causal=True,
                                         activation=activation, bias=bias, final_norm=True)
        self.tie_weights = tie_weights
        # tied: logits = h E^T with the token embedding E (no separate tensor, so checkpoints hold it once)
        self.head = None if tie_weights else nn.Linear(d_model, vocab_size, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("out_proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(m: nn.Module):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; without the position table by default (as nanoGPT counts for FLOPs)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and isinstance(self.pos, LearnedPositions):
            n -= self.pos.embedding.weight.numel()
        return n

    def flops_per_token(self, t: int | None = None) -> float:
        """Training FLOPs per token: 6N (forward + backward of the weights) + 12 L T d (attention)."""
        t = t or self.context
        return 6 * self.num_params() + 12 * self.n_layers * t * self.d_model

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        t = idx.shape[1]
        if t > self.context:
            raise ValueError(f"sequence of {t} tokens is longer than the context {self.context}")
        x = self.drop(self.pos(self.tok_embed(idx)))  # (B, T, C)
        h = self.blocks(x)  # (B, T, C)
        logits = F.linear(h, self.tok_embed.weight) if self.head is None else self.head(h)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T), cropping to the context."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.context:])
            logits = logits[:, -1].float() / max(temperature, 1e-6)  # (B, V)
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(idx.device)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
