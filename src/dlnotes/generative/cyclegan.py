"""CycleGAN between two unpaired handwriting domains: MNIST <-> sklearn's 8x8 digits upsampled to
28x28 (Lecture 11, "Conditional GANs ... cycle consistency").

Domain B is framed as MNIST frames its digits (upsampled to a 20x20 box centred in 28x28, config
``digits="digits20"``), so the two domains differ in style (blocky, blurred 8x8 scans vs pen strokes),
which is what CycleGAN changes. ``digits="digits"`` stretches them over the whole frame instead; that
asks the translators for a geometric change (rescaling by 1.4), which Zhu et al. (2017) list among
CycleGAN's failure cases in their limitations section; digits are kept far less often (see the README).

The notes' recipe for style transfer without paired examples:

* two generators, ``G_AB`` (style A -> style B) and ``G_BA`` (B -> A);
* a discriminator per domain, ``D_B`` on real B vs ``G_AB(a)`` and ``D_A`` on real A vs ``G_BA(b)``,
  trained with the GAN cross-entropy (real = 1, fake = 0); the generators use the non-saturating loss;
* a reconstruction (cycle-consistency) loss so that ``G_BA`` learns to invert ``G_AB`` and back:
  ``||G_BA(G_AB(a)) - a||_1 + ||G_AB(G_BA(b)) - b||_1``, weight ``lambda_cyc``;
* an identity loss ``||G_AB(b) - b||_1 + ||G_BA(a) - a||_1`` (weight ``lambda_id``; Zhu et al. 2017)
  that discourages needless changes.

Two training details of Zhu et al. are options: ``pool_size`` > 0 shows each discriminator a history of
translations (a buffer of that many past images; each fake in a batch is swapped, with probability
1/2, for a stored one, which it replaces; Shrivastava et al. 2017), and ``lr_schedule="cosine"`` decays
all four learning rates to zero by the last step (Zhu et al. decay linearly over the second half).

Nothing tells the networks which digit is which, so whether a translated image keeps its digit is a
real test: a classifier for the *target* domain labels the translations. For A (MNIST) it is the
sample-quality classifier; for B a :class:`SampleClassifier` trained on the 1500 training digits
(its held-out accuracy on the other 297 is reported).

Recipe ``cyclegan-mnist-digits``: share of translations that keep their digit, both directions
(target >= 80% each; ``digit_kept_min`` is the smaller of the two).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from ..data.sampling import StepSampler
from ..engine import Run, Target, recipe
from ..engine.run import load_run_weights
from ..engine.schedules import set_lr, warmup_cosine
from ..engine.plots import write_grid
from ..engine.plots import save_image_grid
from ..eval import sample_quality as SQ
from ..nn.convnets import ImageTranslator
from .gan import ConvDiscriminator, discriminator_loss, generator_loss, image_data, to_signed, to_unit


def train_domain_classifier(x_u8: torch.Tensor, y: torch.Tensor, epochs: int = 30, seed: int = 0) -> SQ.SampleClassifier:
    """The sample-quality convnet trained on a small domain (here the 1500 upsampled 8x8 digits)."""
    torch.manual_seed(seed)
    model = SQ.SampleClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    total = epochs * (len(x_u8) // 64)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x_u8), generator=g)
        for i in range(len(x_u8) // 64):
            idx = perm[i * 64:(i + 1) * 64]
            loss = F.cross_entropy(model(SQ.to_unit(x_u8[idx])), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


@torch.no_grad()
def translate(G, x_u8: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """uint8 (N, 28, 28) of one domain -> float (N, 1, 28, 28) in [0, 1] in the other."""
    was = G.training
    G.eval()
    out = torch.cat([to_unit(G(to_signed(x_u8[i:i + batch]))) for i in range(0, len(x_u8), batch)])
    G.train(was)
    return out


@torch.no_grad()
def kept_digit(classifier: SQ.SampleClassifier, images01: torch.Tensor, labels: torch.Tensor) -> float:
    return (classifier(images01).argmax(1) == labels).float().mean().item()


class ImagePool:
    """A history of ``size`` generated images for the discriminator (Shrivastava et al. 2017).

    ``query(fakes)`` returns a batch of the same shape: while the pool fills, the fakes themselves
    (and they are stored); after that each fake is, with probability 1/2, returned as is, otherwise
    exchanged for a random stored image, which the fake replaces in the pool."""

    def __init__(self, size: int, seed: int = 0):
        if size < 0:
            raise ValueError(f"pool_size must be 0 (no history) or a number of images > 0, not {size}")
        self.size, self.images = size, []
        self.g = torch.Generator().manual_seed(seed)

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return fakes.detach()
        out = []
        for x in fakes.detach():
            if len(self.images) < self.size:
                self.images.append(x.clone())
                out.append(x)
            elif torch.rand((), generator=self.g) < 0.5:
                i = int(torch.randint(len(self.images), (), generator=self.g))
                out.append(self.images[i])
                self.images[i] = x.clone()
            else:
                out.append(x)
        return torch.stack(out)


@dataclass
class CycleGANConfig:
    digits: str = "digits20"  # domain B: digits20 (MNIST's 20x20 framing) | digits (stretched to 28x28)
    width: int = 16  # translator base channels
    blocks: int = 2  # residual blocks per translator
    d_width: int = 32  # discriminator base channels
    batch_size: int = 32  # images per domain per step
    steps: int = 3000  # generator updates
    lr: float = 2e-4  # Adam learning rate (all four networks)
    beta1: float = 0.5  # Adam beta1
    lambda_cyc: float = 10.0  # cycle-consistency weight
    lambda_id: float = 5.0  # identity weight
    pool_size: int = 0  # past translations each discriminator sees (Zhu et al.: 50; 0: only the current batch)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: all rates decay to 0 at the last step
    n_eval_a: int = 10000  # MNIST test images translated to B and classified
    clf_epochs: int = 30  # epochs for the domain-B classifier
    classifier: str = "full"  # MNIST classifier: full | quick
    log_every: int = 50  # steps between logs
    ckpt_every: int = 1000  # steps between checkpoints


@recipe("cyclegan-mnist-digits", lecture=11, section="Conditional GANs (cycle consistency)", config=CycleGANConfig,
        datasets=("mnist",),
        presets={"quick": {"steps": 10, "width": 4, "blocks": 1, "d_width": 8, "n_eval_a": 300, "clf_epochs": 1,
                           "classifier": "quick", "log_every": 5, "ckpt_every": 0}},
        target=Target("digit_kept_min", ">=", 0.8, "issue #7: >= 80% of translations keep their digit, both ways"))
def cyclegan_mnist_digits(cfg: CycleGANConfig, run: Run) -> dict[str, float]:
    """CycleGAN MNIST <-> upsampled 8x8 digits: digit identity kept by the target domain's classifier."""
    xa, ya = image_data("mnist", "train")
    xb, yb = image_data(cfg.digits, "train")
    xa_test, ya_test = image_data("mnist", "test")
    xb_test, yb_test = image_data(cfg.digits, "test")
    G_ab, G_ba = ImageTranslator(cfg.width, cfg.blocks), ImageTranslator(cfg.width, cfg.blocks)
    D_a, D_b = ConvDiscriminator(cfg.d_width, norm="instance"), ConvDiscriminator(cfg.d_width, norm="instance")
    nets = [m.to(run.device) for m in (G_ab, G_ba, D_a, D_b)]
    Gab, Gba, Da, Db = (run.prepare(m) for m in nets)
    opt_g = torch.optim.Adam([*G_ab.parameters(), *G_ba.parameters()], lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam([*D_a.parameters(), *D_b.parameters()], lr=cfg.lr, betas=(cfg.beta1, 0.999))
    run.watch(G_ab=G_ab, G_ba=G_ba, D_a=D_a, D_b=D_b, opt_g=opt_g, opt_d=opt_d)
    start = run.restore()
    sa = StepSampler(len(xa), cfg.batch_size, seed=0, rank=run.rank, world_size=run.world_size)
    sb = StepSampler(len(xb), cfg.batch_size, seed=1, rank=run.rank, world_size=run.world_size)
    pool_a, pool_b = ImagePool(cfg.pool_size, seed=run.rank), ImagePool(cfg.pool_size, seed=run.rank + 1)
    for step in run.steps(cfg.steps, unit="pair", items_per_step=cfg.batch_size):
        a = to_signed(xa[sa.indices(step)]).to(run.device)  # (B, 1, 28, 28) domain A
        b = to_signed(xb[sb.indices(step)]).to(run.device)  # (B, 1, 28, 28) domain B
        if cfg.lr_schedule == "cosine":
            for opt in (opt_g, opt_d):
                set_lr(opt, warmup_cosine(step, cfg.steps, cfg.lr))
        # generators: fool both discriminators, invert each other, leave in-domain images alone
        with run.autocast():
            fake_b, fake_a = Gab(a), Gba(b)
            adv = generator_loss(Db(fake_b).float()) + generator_loss(Da(fake_a).float())
            cyc = (Gba(fake_b) - a).abs().mean() + (Gab(fake_a) - b).abs().mean()
            idt = (Gab(b) - b).abs().mean() + (Gba(a) - a).abs().mean() if cfg.lambda_id else torch.zeros(())
            g_loss = adv + cfg.lambda_cyc * cyc + cfg.lambda_id * idt
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        # discriminators: real = 1, translated = 0
        with run.autocast():
            d_loss = (discriminator_loss(Db(b).float(), Db(pool_b.query(fake_b)).float())
                      + discriminator_loss(Da(a).float(), Da(pool_a.query(fake_a)).float()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            run.log(step, g_loss=g_loss.item(), d_loss=d_loss.item(), cycle_loss=cyc.item(), identity_loss=float(idt.detach()))
        else:
            run.log_check(step, g_loss=g_loss.item(), d_loss=d_loss.item())
    run.checkpoint()
    if not run.is_main:
        return {}
    G_ab.cpu(), G_ba.cpu()  # evaluation on the CPU
    clf_a = SQ.load_classifier("mnist", cfg.classifier)
    clf_b = train_domain_classifier(xb, yb, cfg.clf_epochs)
    ab = translate(G_ab, xa_test[: cfg.n_eval_a])
    ba = translate(G_ba, xb_test)
    result = {"digit_kept_a2b": kept_digit(clf_b, ab, ya_test[: cfg.n_eval_a]),
              "digit_kept_b2a": kept_digit(clf_a, ba, yb_test),
              "classifier_b_accuracy": kept_digit(clf_b, SQ.to_unit(xb_test), yb_test),
              "classifier_a_on_b_accuracy": kept_digit(clf_a, SQ.to_unit(xb_test), yb_test),
              "classifier_b_on_a_accuracy": kept_digit(clf_b, SQ.to_unit(xa_test[: cfg.n_eval_a]), ya_test[: cfg.n_eval_a]),
              "steps": cfg.steps, "throughput": cfg.batch_size * (run.step - start) / max(run.elapsed, 1e-9)}
    result["digit_kept_min"] = min(result["digit_kept_a2b"], result["digit_kept_b2a"])
    rows = torch.cat([SQ.to_unit(xa_test[:16]), ab[:16], SQ.to_unit(xb_test[:16]), ba[:16]])
    save_image_grid(run, "translations", rows, nrow=16,
                    title="rows: MNIST, MNIST->digits, digits, digits->MNIST (test images)")
    return result


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --n 16``: rows of test images and their translations, both ways."""
    from ..engine.config import from_dict

    cfg = from_dict(CycleGANConfig, saved["config"])
    G_ab, G_ba = ImageTranslator(cfg.width, cfg.blocks), ImageTranslator(cfg.width, cfg.blocks)
    G_ab.load_state_dict(load_run_weights(run_dir, "G_ab"))
    G_ba.load_state_dict(load_run_weights(run_dir, "G_ba"))
    n = max(1, min(args.n, 64))
    g = torch.Generator().manual_seed(args.seed)
    xa, _ = image_data("mnist", "test")
    xb, _ = image_data(cfg.digits, "test")
    a = xa[torch.randperm(len(xa), generator=g)[:n]]
    b = xb[torch.randperm(len(xb), generator=g)[:n]]
    rows = torch.cat([SQ.to_unit(a), translate(G_ab, a), SQ.to_unit(b), translate(G_ba, b)])
    out = write_grid(args.out or Path(run_dir) / f"samples-seed{args.seed}.png", rows, nrow=n)
    return f"wrote rows (MNIST, MNIST->digits, digits, digits->MNIST) of {n} to {out}"
