"""Image datasets: MNIST and Fashion-MNIST (IDX), Omniglot (zips of PNGs), built-in 8x8 digits.

All loaders return uint8 tensors ``(N, H, W)`` and int64 labels; models scale to [0, 1] themselves.
Omniglot is decoded once into a tensor cache (written atomically) in the cache folder.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile

import numpy as np
import torch

from .registry import cache_dir, path

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]


def read_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (big-endian header: magic, dims, then uint8 data)."""
    magic = struct.unpack(">I", raw[:4])[0]
    if magic >> 8 != 0x08:
        raise ValueError(f"not a uint8 IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, raw[4: 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"IDX size mismatch: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def _idx_dataset(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if split not in ("train", "test"):
        raise ValueError(f"{name} split must be train or test, not {split!r}")
    stem = "train" if split == "train" else "t10k"
    images = read_idx(gzip.decompress(path(name, f"{stem}-images-idx3-ubyte.gz").read_bytes()))
    labels = read_idx(gzip.decompress(path(name, f"{stem}-labels-idx1-ubyte.gz").read_bytes()))
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    return _idx_dataset("mnist", split)


def fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    return _idx_dataset("fashion_mnist", split)


def digits8x8() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 1797 handwritten digits, 8x8, rescaled from 0..16 to 0..255."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8))
    return images, torch.from_numpy(d.target.astype(np.int64))


def digits28(frame: str = "full") -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits as uint8 (1797, 28, 28), bilinear upsampling. ``frame="full"`` stretches them over
    the whole 28x28 image; ``frame="mnist"`` frames them as MNIST frames its digits (a 20x20 box in the
    centre, 4 blank pixels around)."""
    import torch.nn.functional as F

    if frame not in ("full", "mnist"):
        raise ValueError(f"unknown digits frame {frame!r}: full | mnist")
    x, y = digits8x8()
    size = 28 if frame == "full" else 20
    up = F.interpolate(x[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)
    if frame == "mnist":
        up = F.pad(up, (4, 4, 4, 4))
    return up[:, 0].round().clamp(0, 255).to(torch.uint8), y


DIGITS_TRAIN = 1500  # the built-in digits have no split of their own: the first 1500 train, the other 297 test


def by_name(name: str, split: str = "train", key: str = "dataset") -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and labels of the named set's ``split``: ``mnist``, ``fashion_mnist``, ``digits8x8`` (the
    built-in 8x8 digits), ``digits`` (them stretched over 28x28) or ``digits20`` (them in MNIST's 20x20 box,
    :func:`digits28`). An unknown name is a config error naming ``key``, the field that gave it."""
    if name == "mnist":
        return mnist(split)
    if name == "fashion_mnist":
        return fashion_mnist(split)
    if name not in ("digits8x8", "digits", "digits20"):
        from ..engine.config import ConfigError  # here, not at the top: the engine imports the data layer
        raise ConfigError(f"{key}: unknown image dataset {name!r}; use mnist, fashion_mnist, digits8x8, digits "
                          "or digits20")
    x, y = digits8x8() if name == "digits8x8" else digits28("full" if name == "digits" else "mnist")
    return (x[:DIGITS_TRAIN], y[:DIGITS_TRAIN]) if split == "train" else (x[DIGITS_TRAIN:], y[DIGITS_TRAIN:])


def omniglot(split: str = "background", size: int = 28) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Omniglot characters as ``(n_chars, 20, size, size)`` uint8 (ink = 255) and their
    ``(alphabet, character)`` names. ``split``: background, evaluation, background_small1/2."""
    cache = cache_dir() / f"omniglot_{split}_{size}.pt"
    if cache.exists():  # decoded earlier: the zip is no longer needed
        blob = torch.load(cache, weights_only=True)
        return blob["images"], [tuple(x.split("/")) for x in blob["names"]]
    zpath = path("omniglot", f"images_{split}.zip")
    from PIL import Image

    groups: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    with zipfile.ZipFile(zpath) as z:
        for member in z.namelist():
            if not member.endswith(".png"):
                continue
            parts = member.split("/")
            groups.setdefault((parts[-3], parts[-2]), []).append((parts[-1], z.read(member)))
    names = sorted(groups)
    out = torch.zeros(len(names), 20, size, size, dtype=torch.uint8)
    for i, key in enumerate(names):
        files = sorted(groups[key])
        if len(files) != 20:
            raise ValueError(f"{zpath}: character {key} has {len(files)} drawings, expected 20")
        for j, (_, raw) in enumerate(files):
            img = Image.open(io.BytesIO(raw)).convert("L").resize((size, size), Image.BILINEAR)
            out[i, j] = torch.from_numpy(255 - np.asarray(img, dtype=np.uint8))
    tmp = cache.with_name(f".{cache.name}.tmp{os.getpid()}")
    torch.save({"images": out, "names": ["/".join(n) for n in names]}, tmp)
    os.replace(tmp, cache)
    return out, names
