"""Small convolutional building blocks for 28x28 images (GANs, autoencoders, image translation).

* :class:`ConvEncoder`: image (B, C, 28, 28) -> vector (B, out_dim) with stride-2 4x4 convolutions
  28 -> 14 -> 7 ("the dimensionality is successively reduced through the layers"), used as a
  discriminator, critic or encoder.
* :class:`ConvDecoder`: vector (B, in_dim) -> image (B, C, 28, 28), the reverse: a linear layer to a
  7x7 feature map, then stride-2 4x4 transposed convolutions 7 -> 14 -> 28 ("in a GAN generative
  network, dimensionality is successively expanded via transpose convolutions"), used as a GAN
  generator or a decoder.
* :class:`ImageTranslator`: image -> image of the same size (one downsampling, residual blocks,
  one upsampling), used by CycleGAN.

``norm`` is "batch", "instance", "layer" (GroupNorm with one group, safe for gradient penalties
where batch statistics would couple samples) or "none". ``hidden`` > 0 adds a fully connected layer of
that width between the 7x7 feature map and the vector (Chen et al. 2016's InfoGAN networks: 1024).
"""
from __future__ import annotations

import torch
from torch import nn


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be batch, instance, layer or none, not {kind!r}")


def make_norm1d(kind: str, features: int) -> nn.Module:
    """The vector counterpart of :func:`make_norm` for a fully connected layer."""
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind in ("layer", "instance"):
        return nn.LayerNorm(features)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be batch, instance, layer or none, not {kind!r}")


def check_hidden(hidden: int) -> int:
    if hidden < 0:
        raise ValueError(f"hidden (fc_hidden in a GAN config) must be 0 (no fully connected layer) or a width > 0, not {hidden}")
    return hidden


def make_act(kind: str) -> nn.Module:
    acts = {"relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
            "none": nn.Identity}
    if kind not in acts:
        raise ValueError(f"activation must be one of {list(acts)}, not {kind!r}")
    return acts[kind]()


def conv_block(cin: int, cout: int, kernel: int = 3, stride: int = 1, norm: str = "batch",
               act: str = "relu", transpose: bool = False) -> nn.Sequential:
    """conv (or transposed conv) -> norm -> activation; 4x4 stride 2 halves (doubles) the size."""
    pad = (kernel - stride + 1) // 2 if stride > 1 else kernel // 2
    conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(cin, cout, kernel, stride, pad, bias=norm == "none")
    return nn.Sequential(conv, make_norm(norm, cout), make_act(act))


class ConvEncoder(nn.Module):
    """(B, C, 28, 28) -> (B, out_dim): 4x4/2 convs 28 -> 14 -> 7, then a linear layer.

    ``extra_in`` adds that many constant input planes (a conditional discriminator's one-hot label).
    """

    def __init__(self, out_dim: int, channels=(64, 128), in_ch: int = 1, norm: str = "batch",
                 act: str = "lrelu", extra_in: int = 0, hidden: int = 0):
        super().__init__()
        c1, c2 = channels
        hidden = check_hidden(hidden)
        layers = [
            conv_block(in_ch + extra_in, c1, 4, 2, "none", act),  # (B, c1, 14, 14); no norm on the input layer
            conv_block(c1, c2, 4, 2, norm, act),  # (B, c2, 7, 7)
            nn.Flatten(),
        ]
        if hidden:  # (B, hidden)
            layers += [nn.Linear(c2 * 7 * 7, hidden, bias=norm == "none"), make_norm1d(norm, hidden), make_act(act)]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(hidden or c2 * 7 * 7, out_dim)

    def forward(self, x: torch.Tensor, planes: torch.Tensor | None = None) -> torch.Tensor:
        if planes is not None:  # (B, K) -> (B, K, H, W) constant maps concatenated to the input
            x = torch.cat([x, planes[:, :, None, None].expand(-1, -1, *x.shape[-2:])], dim=1)
        return self.out(self.net(x))  # (B, out_dim)


class ConvDecoder(nn.Module):
    """(B, in_dim) -> (B, C, 28, 28): linear to (c1, 7, 7), 4x4/2 transposed convs 7 -> 14 -> 28."""

    def __init__(self, in_dim: int, channels=(128, 64), out_ch: int = 1, norm: str = "batch",
                 act: str = "relu", out_act: str = "tanh", hidden: int = 0):
        super().__init__()
        c1, c2 = channels
        self.c1 = c1
        hidden = check_hidden(hidden)
        first = [nn.Linear(in_dim, hidden, bias=norm == "none"), make_norm1d(norm, hidden), make_act(act)] if hidden else []
        self.fc = nn.Sequential(*first, nn.Linear(hidden or in_dim, c1 * 7 * 7, bias=norm == "none"))
        self.fc_norm = nn.Sequential(make_norm(norm, c1), make_act(act))
        self.up = nn.Sequential(
            conv_block(c1, c2, 4, 2, norm, act, transpose=True),  # (B, c2, 14, 14)
            nn.ConvTranspose2d(c2, out_ch, 4, 2, 1),  # (B, out_ch, 28, 28)
            make_act(out_act),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc_norm(self.fc(z).view(len(z), self.c1, 7, 7))  # (B, c1, 7, 7)
        return self.up(h)


class ResidualBlock(nn.Module):
    """x + conv-norm-relu-conv-norm(x)."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        self.body = nn.Sequential(conv_block(channels, channels, 3, 1, norm, "relu"),
                                  conv_block(channels, channels, 3, 1, norm, "none"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ImageTranslator(nn.Module):
    """(B, C, 28, 28) -> (B, C, 28, 28): conv, ``downs`` 4x4/2 convs (28 -> 14, or 28 -> 14 -> 7, each
    doubling the channels), residual blocks, as many 4x4/2 transposed convs back up, conv. Two
    downsamplings let the residual blocks see the whole digit (Zhu et al.'s translators downsample twice)."""

    def __init__(self, channels: int = 32, blocks: int = 2, in_ch: int = 1, norm: str = "instance",
                 out_act: str = "tanh", downs: int = 1):
        super().__init__()
        if downs not in (1, 2):
            raise ValueError(f"downs (downsamplings in the translator) must be 1 or 2 for 28x28 images, not {downs}")
        c = channels
        widths = [c * 2 ** i for i in range(downs + 1)]  # c, 2c (, 4c)
        self.net = nn.Sequential(
            conv_block(in_ch, c, 5, 1, norm, "relu"),  # (B, c, 28, 28)
            *[conv_block(widths[i], widths[i + 1], 4, 2, norm, "relu") for i in range(downs)],  # 14x14 (7x7)
            *[ResidualBlock(widths[-1], norm) for _ in range(blocks)],
            *[conv_block(widths[i + 1], widths[i], 4, 2, norm, "relu", transpose=True)
              for i in reversed(range(downs))],  # back to (B, c, 28, 28)
            nn.Conv2d(c, in_ch, 5, 1, 2),
            make_act(out_act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
