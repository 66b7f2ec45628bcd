"""The U-Net used by the diffusion models (Lecture 12, "Autoencoders and U-Nets").

As the notes describe it: convolutions going "small" and transposed convolutions going "big",
tied together with pooling and skip connections, the body made of residual blocks. For denoising
it also takes the noise step ``t`` as a sinusoidal embedding

    emb(t)[2i] = sin(t / 10000^(2i/d)),   emb(t)[2i+1] = cos(t / 10000^(2i/d)),

passed through an MLP and added inside every residual block, and self-attention over the pixels
of the low-resolution levels. For text conditioning (Stable Diffusion's design in the notes) a
cross-attention layer follows the residual block(s) at those levels: queries from the image
features, keys and values from the embedded caption tokens ``w``.

Shape walk for a 28x28 input and ``mults=(1, 2, 2)``, ``base=32``::

    (B,1,28,28) -conv-> (B,32,28,28) -res-> skip0 -avgpool-> (B,32,14,14) -res-> (B,64,14,14) skip1
    -avgpool-> (B,64,7,7) -res+attn-> (B,64,7,7) skip2 -mid res+attn+res->
    [cat skip2] -res+attn-> (B,64,7,7) -convT-> (B,64,14,14) [cat skip1] -res-> (B,64,14,14)
    -convT-> (B,64,28,28) [cat skip0] -res-> (B,32,28,28) -norm,conv-> (B,1,28,28)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..sequence.attention import scaled_dot_product


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (B,) integer or float steps -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.stack([torch.sin(args), torch.cos(args)], -1).flatten(1)  # interleaved sin, cos
    return F.pad(emb, (0, dim % 2))


def norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    """GN-SiLU-conv3x3, + projected time embedding, GN-SiLU-dropout-conv3x3, + (1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, t_dim: int, dropout: float = 0.0):
        super().__init__()
        self.in_layers = nn.Sequential(norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.t_proj = nn.Linear(t_dim, c_out)
        self.out_layers = nn.Sequential(norm(c_out), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(c_out, c_out, 3, padding=1))
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, t_emb):
        h = self.in_layers(x) + self.t_proj(t_emb)[:, :, None, None]
        return self.shortcut(x) + self.out_layers(h)


class Attention2d(nn.Module):
    """Multi-head attention from the pixels of ``x`` (queries) to ``context`` tokens or to ``x`` itself.

    ``context=None``: self-attention over the H*W positions. Otherwise cross-attention to
    ``context`` (B, L, D_ctx) with ``context_mask`` (B, L) True for real tokens. Residual output.
    """

    def __init__(self, ch: int, heads: int = 4, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.norm = norm(ch)
        self.q = nn.Linear(ch, ch)
        self.kv = nn.Linear(context_dim or ch, 2 * ch)
        self.proj = nn.Linear(ch, ch)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, context=None, context_mask=None):
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        src = tokens if context is None else context  # (B, L, D)
        q = self.q(tokens).view(b, h * w, self.heads, -1).transpose(1, 2)  # (B, heads, HW, C/heads)
        k, v = self.kv(src).view(b, src.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, heads, L, C/heads)
        mask = None if context_mask is None else context_mask[:, None, None, :]
        out = scaled_dot_product(q, k, v, mask)  # softmax(QK^T / sqrt(d)) V
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, c))
        return x + out.transpose(1, 2).view(b, c, h, w)


class Level(nn.Module):
    """Residual blocks at one resolution, each followed by self- (and cross-) attention if enabled."""

    def __init__(self, c_in, c_out, t_dim, n_blocks, attn, context_dim, dropout, heads):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(c_in if i == 0 else c_out, c_out, t_dim, dropout) for i in range(n_blocks))
        self.attn = nn.ModuleList(Attention2d(c_out, heads) if attn else nn.Identity() for _ in range(n_blocks))
        self.cross = nn.ModuleList(Attention2d(c_out, heads, context_dim) if attn and context_dim else nn.Identity()
                                   for _ in range(n_blocks))

    def forward(self, x, t_emb, context=None, context_mask=None):
        for res, attn, cross in zip(self.res, self.attn, self.cross):
            x = res(x, t_emb)
            if isinstance(attn, Attention2d):
                x = attn(x)
            if isinstance(cross, Attention2d):
                x = cross(x, context, context_mask)
        return x


def _match(x, ref):
    """Crop or zero-pad x's spatial size to ref's (transposed convs of odd sizes overshoot by one)."""
    dh, dw = ref.shape[-2] - x.shape[-2], ref.shape[-1] - x.shape[-1]
    if dh or dw:
        x = F.pad(x, (0, dw, 0, dh))
    return x


class UNet(nn.Module):
    def __init__(self, in_ch: int = 1, base: int = 32, mults=(1, 2, 2), blocks: int = 1, attn_levels=(2,),
                 context_dim: int | None = None, dropout: float = 0.0, heads: int = 4):
        super().__init__()
        chans = [base * m for m in mults]
        t_dim = 4 * base
        self.base = base
        self.t_mlp = nn.Sequential(nn.Linear(base, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.conv_in = nn.Conv2d(in_ch, base, 3, padding=1)
        self.down = nn.ModuleList()
        c = base
        for i, ch in enumerate(chans):
            self.down.append(Level(c, ch, t_dim, blocks, i in attn_levels, context_dim, dropout, heads))
            c = ch
        low = len(chans) - 1
        self.mid = Level(c, c, t_dim, 2, True, context_dim, dropout, heads)
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in reversed(range(len(chans))):
            self.upsample.append(nn.ConvTranspose2d(c, c, 2, stride=2) if i < low else nn.Identity())
            self.up.append(Level(c + chans[i], chans[i], t_dim, blocks, i in attn_levels, context_dim, dropout, heads))
            c = chans[i]
        self.out = nn.Sequential(norm(c), nn.SiLU(), nn.Conv2d(c, in_ch, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x, t, context=None, context_mask=None):
        """x: (B, C, H, W); t: (B,) steps; context: (B, L, D) caption tokens or None."""
        t_emb = self.t_mlp(timestep_embedding(t, self.base))  # (B, 4 base)
        h = self.conv_in(x)
        skips = []
        for i, level in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2, ceil_mode=True)  # pooling: go "small"
            h = level(h, t_emb, context, context_mask)
            skips.append(h)
        h = self.mid(h, t_emb, context, context_mask)
        for upsample, level in zip(self.upsample, self.up):
            skip = skips.pop()
            h = _match(upsample(h), skip)  # transposed conv: go "big"
            h = level(torch.cat([h, skip], 1), t_emb, context, context_mask)
        return self.out(h)
