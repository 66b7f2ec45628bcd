"""Autoencoders: the linear autoencoder is PCA; a convolutional autoencoder (Lecture 11, "VAEs").

An autoencoder is an encoder ``g_phi`` and a decoder ``f_theta`` trained on the reconstruction loss

    L(theta, phi) = (1/n) sum_i ||x_i - f_theta(g_phi(x_i))||^2.

With single linear layers, ``g(x) = V^T x`` and ``f(h) = U h`` (U, V: d x k), this is

    L(U, V) = (1/n) sum_i ||x_i - U V^T x_i||^2,

whose minimisers (on centred data) have ``U V^T`` equal to the orthogonal projection onto the span
of the top-k principal directions: the linear autoencoder *is* PCA with k components, although
``U`` itself need not be orthonormal (any invertible mixing of the basis gives the same product).
We check it by the principal angles between ``span(U)`` and scikit-learn's PCA subspace.

:class:`ConvAutoencoder` replaces the linear maps by :class:`dlnotes.nn.convnets.ConvEncoder` and
``ConvDecoder`` (sigmoid output); at the same code size it reconstructs better than PCA.

Recipes: ``linear-ae-pca-mnist`` (largest principal angle to the PCA subspace, MSE vs PCA's) and
``conv-ae-mnist`` (test MSE against PCA with the same k; samples decoded from a Gaussian fitted to the
training codes, "feed in different latent vectors to generate new samples").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.images import by_name
from ..data.sampling import StepSampler
from ..engine import Run, Target, recipe
from ..engine.run import load_run_weights
from ..engine.plots import write_grid
from ..engine.plots import save_image_grid
from ..nn.convnets import ConvDecoder, ConvEncoder
from .gan import score_generated


class LinearAutoencoder(nn.Module):
    """x -> U V^T x, no biases (the data are centred first)."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.V = nn.Linear(d, k, bias=False)  # encoder V^T
        self.U = nn.Linear(k, d, bias=False)  # decoder U
        nn.init.normal_(self.V.weight, std=1 / math.sqrt(d))
        nn.init.normal_(self.U.weight, std=1 / math.sqrt(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.U(self.V(x))  # (B, d)


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """(1/n) sum_i ||x_i - x_hat_i||^2."""
    return (x - x_hat).pow(2).sum(1).mean()


def linear_ae_loss_from_covariance(model: LinearAutoencoder, C: torch.Tensor) -> torch.Tensor:
    """The full-batch loss (1/n) sum_i ||x_i - U V^T x_i||^2 from the second moment C = X^T X / n (d, d).

    With P = U V^T: (1/n) sum_i ||(I - P) x_i||^2 = tr(C) - 2 tr(P C) + tr(P C P^T), and
    tr(P C) = <V^T C, U^T>, tr(P C P^T) = <U^T U, V^T C V> (Frobenius products of k x d and k x k
    matrices). The value and its gradients are those of the per-sample form, at O(d^2 k) per step
    instead of O(n d k): for 20000 MNIST images 3000 full-batch steps take seconds, not 20 minutes."""
    Vt, U = model.V.weight, model.U.weight  # (k, d) = V^T, (d, k) = U
    VtC = Vt @ C  # (k, d)
    return torch.diagonal(C).sum() - 2 * (VtC * U.T).sum() + ((U.T @ U) * (VtC @ Vt.T)).sum()


def train_linear_ae(x: torch.Tensor, k: int, steps: int = 2000, lr: float = 1e-2, batch: int = 0,
                    seed: int = 0) -> LinearAutoencoder:
    """Adam on the reconstruction loss of centred ``x`` (N, d); full batch when ``batch`` is 0
    (then through :func:`linear_ae_loss_from_covariance`, the same loss computed from X^T X / n)."""
    torch.manual_seed(seed)
    model = LinearAutoencoder(x.shape[1], k)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.01)
    sampler = StepSampler(len(x), batch, seed=seed) if batch else None
    C = None if batch else (x.double().T @ x.double() / len(x)).float()  # (d, d)
    for step in range(steps):
        if sampler is None:
            loss = linear_ae_loss_from_covariance(model, C)
        else:
            xb = x[sampler.indices(step)]
            loss = reconstruction_loss(xb, model(xb))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model


def principal_angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Principal angles (degrees, descending) between the column spans of a (d, k) and b (d, k)."""
    from scipy.linalg import subspace_angles

    return np.degrees(subspace_angles(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))


def compare_with_pca(x: np.ndarray, model: LinearAutoencoder, k: int) -> dict[str, float]:
    """Largest principal angle between span(U) and sklearn's top-k PCA subspace, and both MSEs."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=k, svd_solver="full").fit(x)
    xc = x - pca.mean_
    U = model.U.weight.detach().double().numpy()  # (d, k)
    angles = principal_angles_deg(U, pca.components_.T)
    with torch.no_grad():
        rec = model(torch.from_numpy(xc).float()).double().numpy()
    mse_ae = float(((xc - rec) ** 2).sum(1).mean())
    mse_pca = float(((xc - pca.inverse_transform(pca.transform(x)) + pca.mean_) ** 2).sum(1).mean())
    return {"max_principal_angle_deg": float(angles.max()), "mean_principal_angle_deg": float(angles.mean()),
            "recon_mse_ae": mse_ae, "recon_mse_pca": mse_pca, "mse_ratio_to_pca": mse_ae / mse_pca}


def flat01(x_u8: torch.Tensor) -> torch.Tensor:
    return x_u8.flatten(1).float() / 255.0  # (N, 784) in [0, 1]


@dataclass
class LinearAEConfig:
    dataset: str = "mnist"  # mnist | fashion_mnist | digits
    n_train: int = 20000  # training images (PCA is fitted on the same ones)
    k: int = 10  # hidden units = principal components
    steps: int = 3000  # Adam steps
    batch_size: int = 0  # 0 = full batch (the exact loss)
    lr: float = 3e-3  # Adam learning rate (cosine decay)


@recipe("linear-ae-pca-mnist", lecture=11, section="Variational Autoencoders (linear autoencoder = PCA)",
        config=LinearAEConfig, datasets=("mnist",),
        presets={"quick": {"n_train": 2000, "steps": 300, "k": 4, "lr": 1e-2}},
        target=Target("max_principal_angle_deg", "<=", 5.0,
                      "notes: the linear autoencoder is PCA (sklearn PCA as reference)"))
def linear_ae_pca(cfg: LinearAEConfig, run: Run) -> dict[str, float]:
    """Linear autoencoder trained by Adam on MNIST vs scikit-learn's PCA: principal angles and MSE."""
    x_u8, _ = by_name(cfg.dataset, "train")
    x = flat01(x_u8[: cfg.n_train])
    mean = x.mean(0)
    model = train_linear_ae(x - mean, cfg.k, cfg.steps, cfg.lr, cfg.batch_size)
    run.watch(model=model)
    run.checkpoint()
    result = compare_with_pca(x.double().numpy(), model, cfg.k)
    side = int(math.isqrt(x.shape[1]))
    U = model.U.weight.detach()
    Q, _ = torch.linalg.qr(U)  # orthonormal basis of span(U)
    save_image_grid(run, "decoder_basis", (Q.T / (2 * Q.abs().max()) + 0.5).view(-1, 1, side, side),
                    nrow=min(cfg.k, 10), title="orthonormalised decoder columns (span = PCA subspace)")
    return result


# ----------------------------------------------------------------------------- convolutional AE


class ConvAutoencoder(nn.Module):
    def __init__(self, code: int = 16, width: int = 32):
        super().__init__()
        self.encoder = ConvEncoder(code, (width, 2 * width), norm="batch", act="relu")
        self.decoder = ConvDecoder(code, (2 * width, width), norm="batch", out_act="sigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # (B, 1, 28, 28)


@dataclass
class ConvAEConfig:
    dataset: str = "mnist"  # mnist | fashion_mnist | digits
    code: int = 16  # code (bottleneck) size
    width: int = 32  # base channel count
    batch_size: int = 128  # images per step
    epochs: float = 5.0  # passes over the training set
    lr: float = 2e-3  # Adam learning rate (cosine decay)
    n_score: int = 10000  # generated samples scored by the classifier (0: skip)
    classifier: str = "full"  # scoring classifier: full | quick
    log_every: int = 50  # steps between logs
    ckpt_every: int = 1000  # steps between checkpoints


@torch.no_grad()
def encode_all(model: ConvAutoencoder, x01: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([model.encoder(x01[i:i + batch]) for i in range(0, len(x01), batch)])


@recipe("conv-ae-mnist", lecture=11, section="Variational Autoencoders (autoencoders)", config=ConvAEConfig,
        datasets=("mnist",), presets={"quick": {"epochs": 0.02, "width": 8, "n_score": 500, "classifier": "quick",
                                                "log_every": 5, "ckpt_every": 0}},
        target=Target("mse_ratio_to_pca", "<", 1.0, "a nonlinear code beats PCA (= the linear AE) of the same size"))
def conv_ae_mnist(cfg: ConvAEConfig, run: Run) -> dict[str, float]:
    """Convolutional autoencoder on MNIST: test MSE against PCA with the same code size, samples."""
    from sklearn.decomposition import PCA

    x_u8, _ = by_name(cfg.dataset, "train")
    xt_u8, _ = by_name(cfg.dataset, "test")
    model = ConvAutoencoder(cfg.code, cfg.width).to(run.device)
    net = run.prepare(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sampler = StepSampler(len(x_u8), cfg.batch_size, seed=0, rank=run.rank, world_size=run.world_size)
    total = max(1, int(cfg.epochs * sampler.steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    run.watch(model=model, optimizer=opt, scheduler=sched)
    start = run.restore()
    for step in run.steps(total, unit="img", items_per_step=cfg.batch_size):
        x = (x_u8[sampler.indices(step)][:, None].float() / 255).to(run.device)  # (B, 1, 28, 28)
        with run.autocast():
            loss = reconstruction_loss(x.flatten(1), net(x).float().flatten(1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == total - 1:
            run.log(step, loss=loss.item())
        else:
            run.log_check(step, loss=loss.item())
    run.checkpoint()
    if not run.is_main:
        return {}
    model.cpu().eval()  # evaluation on the CPU
    xt = xt_u8[:, None].float() / 255
    with torch.no_grad():
        rec = torch.cat([model(xt[i:i + 1000]) for i in range(0, len(xt), 1000)])
    mse = reconstruction_loss(xt.flatten(1), rec.flatten(1)).item()
    n_pca = min(len(x_u8), 20000)
    pca = PCA(n_components=cfg.code, svd_solver="randomized", random_state=0).fit(flat01(x_u8[:n_pca]).numpy())
    xt_np = xt.flatten(1).numpy()
    mse_pca = float(((xt_np - pca.inverse_transform(pca.transform(xt_np))) ** 2).sum(1).mean())
    # generation: decode codes drawn from a Gaussian fitted to the training codes
    codes = encode_all(model, x_u8[:10000][:, None].float() / 255)
    mean, cov = codes.mean(0), torch.cov(codes.T) + 1e-5 * torch.eye(cfg.code)
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    torch.manual_seed(0)
    with torch.no_grad():
        samples = torch.cat([model.decoder(dist.sample((1000,))) for _ in range(max(1, cfg.n_score // 1000))])
    save_image_grid(run, "reconstructions", torch.cat([xt[:32], rec[:32]]), title="test images and reconstructions")
    save_image_grid(run, "samples", samples[:64], title="decoded Gaussian codes (seed 0)")
    torch.save({"mean": mean, "cov": cov}, run.dir / "code_gaussian.pt")
    result = {"test_mse": mse, "pca_test_mse": mse_pca, "mse_ratio_to_pca": mse / mse_pca, "steps": total,
              "throughput": cfg.batch_size * (run.step - start) / max(run.elapsed, 1e-9)}
    if cfg.n_score:
        result.update(score_generated(run, samples[: cfg.n_score], cfg.dataset, cfg.classifier))
    return result


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR``: conv AE decodes Gaussian codes; linear AE shows its basis."""
    from ..engine.config import from_dict

    out = args.out
    if saved["recipe"] == "linear-ae-pca-mnist":
        cfg = from_dict(LinearAEConfig, saved["config"])
        w = load_run_weights(run_dir, "model")["U.weight"]  # (d, k)
        side = int(math.isqrt(w.shape[0]))
        g = torch.Generator().manual_seed(args.seed)
        imgs = (torch.randn(args.n, cfg.k, generator=g) @ w.T).view(-1, 1, side, side)
        write_grid(out, (imgs / (2 * imgs.abs().max()) + 0.5))
        return f"wrote {args.n} random points of the learned principal subspace to {out}"
    cfg = from_dict(ConvAEConfig, saved["config"])
    model = ConvAutoencoder(cfg.code, cfg.width)
    model.load_state_dict(load_run_weights(run_dir, "model"))
    model.eval()
    gauss_path = Path(run_dir) / "code_gaussian.pt"
    gauss = torch.load(gauss_path, weights_only=True)
    dist = torch.distributions.MultivariateNormal(gauss["mean"], covariance_matrix=gauss["cov"])
    torch.manual_seed(args.seed)
    with torch.no_grad():
        write_grid(out, model.decoder(dist.sample((args.n,))))
    return f"wrote {args.n} samples to {out}"
