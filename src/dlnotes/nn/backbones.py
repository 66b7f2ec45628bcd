"""Convolutional backbones shared by the few-shot and self-supervised methods (Lecture 13).

``Conv4`` is the standard few-shot embedding network (Vinyals et al. 2016, Snell et al. 2017,
Finn et al. 2017): four blocks of ``conv3x3(64) -> batch norm -> ReLU -> max-pool 2x2``. On a
28x28 Omniglot image the spatial size goes 28 -> 14 -> 7 -> 3 -> 1, so the embedding is 64-d.
Blocks without pooling (``pool_blocks < 4``) keep a feature map, which the relation network needs.

``SmallResNet`` is a CIFAR-style residual network scaled down for 28x28 grayscale images (three
stages of basic blocks ``x + F(x)``, global average pooling), used as SimCLR's encoder ``g``.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def conv_block(c_in: int, c_out: int, pool: bool = True, track_running_stats: bool = True,
               padding: int = 1) -> nn.Sequential:
    """conv3x3 -> BN -> ReLU (-> max-pool 2x2)."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=padding),
              nn.BatchNorm2d(c_out, track_running_stats=track_running_stats),
              nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Conv4(nn.Module):
    """Four conv blocks with ``width`` filters; output flattened to ``(B, out_dim)``.

    ``pool_blocks``: how many of the blocks end with a 2x2 max-pool (the first ones pool).
    ``track_running_stats=False`` makes batch norm always use the batch's statistics, as MAML does.
    ``flatten=False`` returns the ``(B, width, h, w)`` feature map instead.
    """

    def __init__(self, in_channels: int = 1, width: int = 64, blocks: int = 4, pool_blocks: int = 4,
                 image_size: int = 28, track_running_stats: bool = True, flatten: bool = True):
        super().__init__()
        chans = [in_channels] + [width] * blocks
        self.blocks = nn.Sequential(*[conv_block(chans[i], chans[i + 1], pool=i < pool_blocks,
                                                 track_running_stats=track_running_stats)
                                      for i in range(blocks)])
        self.flatten = flatten
        size = image_size
        for _ in range(min(pool_blocks, blocks)):
            size //= 2
        self.feature_shape = (width, size, size)
        self.out_dim = width * size * size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x)  # (B, width, h, w)
        return h.flatten(1) if self.flatten else h


class BasicBlock(nn.Module):
    """``relu(x + F(x))`` with ``F = conv-BN-ReLU-conv-BN``; a 1x1 conv matches shapes on stride."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem conv, three stages (strides 1, 2, 2) of ``depth`` basic blocks, global average pool.

    28x28 input -> stage maps 28, 14, 7 -> ``(B, 4 * width)`` features.
    """

    def __init__(self, in_channels: int = 1, width: int = 32, depth: int = 1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        stages, c = [], width
        for i, mult in enumerate((1, 2, 4)):
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                stages.append(BasicBlock(c, width * mult, stride))
                c = width * mult
        self.stages = nn.Sequential(*stages)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))  # (B, 4w, 7, 7)
        return h.mean(dim=(2, 3))  # (B, 4w)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W)`` ink images -> float in [0, 1] with a channel axis ``(..., 1, H, W)``."""
    return (images.float() / 255.0).unsqueeze(-3)
