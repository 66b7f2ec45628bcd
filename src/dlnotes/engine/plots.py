"""Figures every run gets: learning curves from ``metrics.jsonl``, image grids for samples."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def read_metrics(path) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return {}
    for ln in lines:
        if not ln.strip():
            continue
        row = json.loads(ln)
        for k, v in row.items():
            if k in ("step", "time") or not isinstance(v, (int, float)):
                continue
            series[k][0].append(row["step"])
            series[k][1].append(v)
    return dict(series)


def plot_metrics(run, name: str = "curves") -> None:
    """One panel per metric (at most 8), x = step; saved as ``curves.png`` in the run folder."""
    series = read_metrics(run.dir / "metrics.jsonl")
    series = {k: v for k, v in series.items() if len(v[0]) > 1}
    if not series:
        return
    keys = sorted(series)[:8]
    cols = min(4, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        x, y = series[k]
        ax.plot(x, y, lw=1.2)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(run.meta.get("recipe", ""), fontsize=10)
    fig.tight_layout()
    run.save_figure(name, fig)


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (C, H', W') grid image."""
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    grid = torch.ones(c, nrows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
    return grid


def save_image_grid(run, name: str, images: torch.Tensor, nrow: int = 8, title: str | None = None) -> None:
    grid = image_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow)
    fig, ax = plt.subplots(figsize=(grid.shape[2] / 40, grid.shape[1] / 40))
    if grid.shape[0] == 1:
        ax.imshow(grid[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(grid.permute(1, 2, 0))
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    run.save_figure(name, fig)


def write_grid(path, images01: torch.Tensor, nrow: int = 8) -> Path:
    """Save (N, C, H, W) images in [0, 1] (C = 1 grey or 3 colour) as one PNG grid at ``path``."""
    grid = image_grid(images01.detach().float().clamp(0, 1).cpu(), nrow=nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if grid.shape[0] == 1:
        plt.imsave(path, grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        plt.imsave(path, grid.permute(1, 2, 0).numpy())
    return path
