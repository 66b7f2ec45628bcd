"""Autoregressive image model (Lecture 12): PixelCNN with masked convolutions on binarised MNIST.

The notes' factorisation ``P(x) = prod_i p(x[i] | x[0:i])`` over pixels in raster order (row by
row, left to right). A PixelCNN computes every conditional at once with convolutions whose
kernels are masked so that output pixel ``i`` sees only pixels ``< i``:

* mask **A** (first layer): zero at the centre and at every position after it in raster order;
* mask **B** (later layers): the centre is allowed (it carries features of pixels ``< i`` only,
  because the first layer already excluded pixel ``i``).

Each pixel is Bernoulli, ``p(x_i = 1 | x_<i) = sigmoid(logit_i)``, and the exact negative
log-likelihood of an image is ``sum_i BCE(logit_i, x_i)`` in nats; sampling fills the image one
pixel at a time (784 network evaluations for 28x28).

Binarised MNIST here is *stochastically* binarised once with a fixed seed (each pixel is 1 with
probability intensity/255), as in the binarised-MNIST benchmark on which van den Oord et al. (2016)
report 81.3 nats; thresholding instead would give an easier, not comparable, task.

Recipe ``pixelcnn-mnist`` (test NLL in nats, target <= 90).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.images import by_name
from ..data.sampling import StepSampler
from ..engine import Run, Target, recipe
from ..engine.run import load_run_weights
from ..engine.plots import write_grid
from ..engine.schedules import set_lr, warmup_cosine


class MaskedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose kernel is multiplied by a raster-order causal mask of type A or B."""

    def __init__(self, mask_type: str, c_in: int, c_out: int, k: int):
        super().__init__(c_in, c_out, k, padding=k // 2)
        if mask_type not in ("A", "B"):
            raise ValueError("mask_type must be 'A' or 'B'")
        mask = torch.ones(k, k)
        c = k // 2
        mask[c, c + (mask_type == "B"):] = 0  # the centre row: from the centre (A) or after it (B)
        mask[c + 1:] = 0  # rows below the centre
        self.register_buffer("mask", mask.view(1, 1, k, k))

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class MaskedResidual(nn.Module):
    """ReLU-1x1 (h -> h/2), ReLU-masked kxk B (h/2 -> h/2), ReLU-1x1 (h/2 -> h), plus the input."""

    def __init__(self, h: int, k: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(h, h // 2, 1), nn.ReLU(),
                                  MaskedConv2d("B", h // 2, h // 2, k), nn.ReLU(), nn.Conv2d(h // 2, h, 1))

    def forward(self, x):
        return x + self.body(x)


class PixelCNN(nn.Module):
    """7x7 mask-A conv, residual mask-B blocks, two 1x1 layers to one Bernoulli logit per pixel."""

    def __init__(self, hidden: int = 64, blocks: int = 7, out_hidden: int = 64):
        super().__init__()
        self.inp = MaskedConv2d("A", 1, hidden, 7)
        self.blocks = nn.Sequential(*[MaskedResidual(hidden) for _ in range(blocks)])
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, out_hidden, 1), nn.ReLU(), nn.Conv2d(out_hidden, 1, 1))

    def forward(self, x):  # x: (B, 1, H, W) in {0, 1}
        return self.out(self.blocks(self.inp(2 * x - 1)))  # (B, 1, H, W) logits

    def nll(self, x):
        """Exact negative log-likelihood per image in nats: ``-sum_i log p(x_i | x_<i)``."""
        return F.binary_cross_entropy_with_logits(self(x), x, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, shape=(1, 28, 28), generator=None, device="cpu"):
        x = torch.zeros(n, *shape, device=device)
        _, h, w = shape
        for i in range(h):
            for j in range(w):
                p = torch.sigmoid(self(x)[:, 0, i, j])  # p(x_ij = 1 | pixels before (i, j))
                u = torch.rand(n, generator=generator).to(device)
                x[:, 0, i, j] = (u < p).float()
        return x


def binarise(pixels_u8: torch.Tensor, seed: int) -> torch.Tensor:
    """Stochastic binarisation fixed by ``seed``: (N, H, W) uint8 -> (N, 1, H, W) float in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(pixels_u8.shape, generator=g) < pixels_u8.float() / 255.0).float().unsqueeze(1)


@torch.no_grad()
def test_nll(model: PixelCNN, data: torch.Tensor, device, batch: int = 500) -> float:
    model.eval()
    total = sum(float(model.nll(data[i:i + batch].to(device)).sum()) for i in range(0, len(data), batch))
    model.train()
    return total / len(data)


@dataclass
class PixelCNNConfig:
    dataset: str = "mnist"  # mnist | digits8x8 (built in, quick runs)
    hidden: int = 64  # feature maps in the residual trunk
    blocks: int = 12  # masked residual blocks (each adds a row of context: 15 rows up; 6 blocks gave 90.35 nats)
    out_hidden: int = 64  # width of the 1x1 output layers
    epochs: float = 12.0  # passes over the training set (--amp bf16: about 60 min on one core here)
    batch_size: int = 64  # images per step
    lr: float = 1e-3  # Adam learning rate (cosine-decayed to 5%)
    eval_every: int = 1000  # steps between test NLL checks on 2000 images (0: end only)
    n_eval: int = 10000  # test images scored at the end
    n_samples: int = 16  # images sampled at the end (784 forward passes each batch)
    ckpt_every: int = 500  # steps between checkpoints


@recipe("pixelcnn-mnist", lecture=12, section="Autoregressive models", config=PixelCNNConfig, datasets=("mnist",),
        presets={"quick": {"dataset": "digits8x8", "hidden": 32, "blocks": 2, "out_hidden": 32, "epochs": 4.0,
                           "batch_size": 50, "eval_every": 0, "n_samples": 16, "ckpt_every": 60}},
        target=Target("nll_nats", "<=", 90, "van den Oord et al. 2016 (PixelRNN paper), PixelCNN on "
                      "binarised MNIST: 81.3 nats"))
def pixelcnn_mnist(cfg: PixelCNNConfig, run: Run) -> dict[str, float]:
    """PixelCNN on stochastically binarised MNIST: exact test NLL in nats and samples."""
    train = binarise(by_name(cfg.dataset, "train")[0], seed=0)
    test = binarise(by_name(cfg.dataset, "test")[0][: cfg.n_eval], seed=1)
    model = PixelCNN(cfg.hidden, cfg.blocks, cfg.out_hidden)
    net = run.prepare(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sampler = StepSampler(len(train), cfg.batch_size, seed=0, rank=run.rank, world_size=run.world_size)
    total = max(1, int(cfg.epochs * sampler.steps_per_epoch))
    run.watch(model=model, optimizer=opt)
    start = run.restore()
    run.print(f"PixelCNN: {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M parameters, {total} steps")
    for step in run.steps(total, unit="img", items_per_step=cfg.batch_size):
        set_lr(opt, warmup_cosine(step, total, cfg.lr, 0.05 * cfg.lr))  # half a cosine down to lr / 20
        x = train[sampler.indices(step)].to(run.device)
        with run.autocast():
            logits = net(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == total - 1:
            run.log(step, loss=loss.item(), lr=opt.param_groups[0]["lr"])
        else:
            run.log_check(step, loss=loss.item())
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < total and run.is_main:
            run.log(step + 1, test_nll_nats=test_nll(model, test[:2000], run.device))
    result = {}
    if run.is_main:
        nll = test_nll(model, test, run.device)
        dims = test[0].numel()
        model.eval()
        samples = model.sample(cfg.n_samples, tuple(test.shape[1:]), torch.Generator().manual_seed(0), run.device)
        from ..engine.plots import save_image_grid
        save_image_grid(run, "samples", samples, title=f"PixelCNN samples, test NLL {nll:.1f} nats")
        result = {"nll_nats": nll, "bits_per_dim": nll / (dims * math.log(2)), "steps": total,
                  "epochs": total / sampler.steps_per_epoch,
                  "throughput": cfg.batch_size * (run.step - start) / max(run.elapsed, 1e-9)}
    run.checkpoint()
    return result


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --n 16 --out grid.png``: pixel-by-pixel samples from a trained PixelCNN."""
    from ..engine.config import from_dict
    cfg = from_dict(PixelCNNConfig, saved["config"])
    model = PixelCNN(cfg.hidden, cfg.blocks, cfg.out_hidden)
    model.load_state_dict(load_run_weights(Path(run_dir)))
    model.eval()
    shape = (1, *by_name(cfg.dataset, "test")[0].shape[1:])
    x = model.sample(args.n, shape, torch.Generator().manual_seed(args.seed))
    out = write_grid(args.out, x)
    return f"wrote {args.n} samples to {out}"
