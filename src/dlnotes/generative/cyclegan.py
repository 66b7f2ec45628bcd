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

The two domains also differ in geometry: MNIST keeps each digit's aspect ratio inside its 20x20 box,
while the 8x8 scans were stretched to fill theirs (a 1 or a 9 is wide in B, narrow in A). Convolutional
translators change local style well and global shape badly (Zhu et al.'s limitations), so each
translator here starts with an affine spatial transformer (:class:`AffineWarp`, config ``warp``, on by
default): it predicts a per-image rescaling or shear, starting at the identity, before the
convolutions restyle the image. It is trained by the same losses; nothing tells it the digit.

Two training details of Zhu et al. are options: ``pool_size`` > 0 shows each discriminator a history of
translations (a buffer of that many past images; each fake in a batch is swapped, with probability
1/2, for a stored one, which it replaces; Shrivastava et al. 2017), and ``lr_schedule="cosine"`` decays
all four learning rates to zero by the last step (Zhu et al. decay linearly over the second half).

Domain B's images are 8x8 scans upsampled, so they hold 64 numbers, not 784. ``project_b=True`` makes
``G_AB`` produce images of that space: its output is projected onto the 64-dimensional space of
upsampled 8x8 scans (:class:`OntoDigitsGrid`). The discriminator ``D_B`` then
judges only what a real B image can show, and the generator cannot hide MNIST's fine detail in
sub-8x8 texture to pass the cycle A -> B -> A; the 64 numbers it keeps must carry the digit.

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

from ..data.images import by_name
from ..data.sampling import StepSampler
from ..engine import Run, Target, recipe
from ..engine.config import ConfigError
from ..engine.run import load_run_weights
from ..engine.schedules import set_lr, warmup_cosine
from ..engine.plots import write_grid
from ..engine.plots import save_image_grid
from ..eval import sample_quality as SQ
from ..nn.convnets import ConvEncoder, ImageTranslator
from .gan import ConvDiscriminator, discriminator_loss, generator_loss, to_signed, to_unit


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


class OntoDigitsGrid(torch.nn.Module):
    """Wraps a translator into domain B so its output lies in B's image space. The real images are
    ``U s``: an 8x8 scan ``s`` upsampled bilinearly by the linear map ``U`` into the digit box (20x20
    at offset 4 for ``digits20``, the whole 28x28 for ``digits``), as :func:`dlnotes.data.images.digits28`
    builds them. The output's box ``y`` is replaced by its orthogonal projection ``U U^+ y`` onto that
    64-dimensional space (``U^+``: the pseudo-inverse), so a real B image passes unchanged. Images are
    in [-1, 1]; the frame around the box is set blank (-1)."""

    def __init__(self, net: torch.nn.Module, digits: str):
        super().__init__()
        if digits not in ("digits20", "digits"):
            raise ValueError(f"digits must be digits20 or digits, not {digits!r}")
        self.net, self.box = net, (20 if digits == "digits20" else 28)
        basis = torch.eye(64).view(64, 1, 8, 8)
        U = F.interpolate(basis, size=(self.box, self.box), mode="bilinear", align_corners=False)
        U = U.reshape(64, -1).T.double()  # (box*box, 64)
        self.register_buffer("proj", (U @ torch.linalg.pinv(U)).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        n, c, h, w = y.shape
        pad = (h - self.box) // 2
        box = y[..., pad:pad + self.box, pad:pad + self.box].reshape(n, c, -1)
        box = (box @ self.proj.to(box.dtype).T).view(n, c, self.box, self.box)
        return F.pad(box, (pad, pad, pad, pad), value=-1.0) if pad else box


class AffineWarp(torch.nn.Module):
    """A spatial transformer (Jaderberg et al. 2015) in front of a translator: a small convnet reads
    the image and predicts an affine map ``theta`` (2x3, starting at the identity), the image is
    resampled through it (``affine_grid`` + bilinear ``grid_sample``), then translated. It lets a
    translator rescale or shear a digit as a whole, a geometric change that convolutions with local
    receptive fields make badly. Images are in [-1, 1]; the border (blank, -1) fills what the warp
    brings in from outside."""

    def __init__(self, net: torch.nn.Module, width: int = 8):
        super().__init__()
        self.net = net
        # conv 4x4/2 (28 -> 14), conv 4x4/2 (-> 7), a 32-wide layer, then the 6 entries of theta
        self.loc = ConvEncoder(6, channels=(width, 2 * width), norm="none", act="relu", hidden=32)
        torch.nn.init.zeros_(self.loc.out.weight)  # starts as the identity map
        with torch.no_grad():
            self.loc.out.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.loc(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return self.net(F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False))


def make_translators(cfg: "CycleGANConfig") -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(G_AB, G_BA)`` as the config builds them (``warp`` puts an affine spatial transformer in
    front of both, ``project_b`` projects ``G_AB``'s output onto domain B's images)."""
    G_ab, G_ba = (ImageTranslator(cfg.width, cfg.blocks, downs=cfg.downs) for _ in range(2))
    if cfg.warp:
        G_ab, G_ba = AffineWarp(G_ab), AffineWarp(G_ba)
    return (OntoDigitsGrid(G_ab, cfg.digits) if cfg.project_b else G_ab), G_ba


@dataclass
class CycleGANConfig:
    digits: str = "digits20"  # domain B: digits20 (MNIST's 20x20 framing) | digits (stretched to 28x28)
    width: int = 16  # translator base channels
    blocks: int = 2  # residual blocks per translator
    downs: int = 1  # translator downsamplings: 1 (28 -> 14) or 2 (28 -> 7, blocks see the whole digit)
    d_width: int = 32  # discriminator base channels
    batch_size: int = 32  # images per domain per step
    steps: int = 4500  # generator updates (3000 keeps 0.78 of MNIST digits on seed 1; 4500 keeps >= 0.8 on seeds 0 and 1)
    lr: float = 2e-4  # Adam learning rate (all four networks)
    beta1: float = 0.5  # Adam beta1
    lambda_cyc: float = 10.0  # cycle-consistency weight
    lambda_id: float = 5.0  # identity weight
    pool_size: int = 0  # past translations each discriminator sees (Zhu et al.: 50; 0: only the current batch)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: all rates decay to 0 at the last step
    warp: bool = True  # an affine spatial transformer in front of each translator (rescale, shear)
    project_b: bool = False  # G_AB's output projected onto domain B's space of upsampled 8x8 scans
    n_eval_a: int = 10000  # MNIST test images translated to B and classified
    clf_epochs: int = 30  # epochs for the domain-B classifier
    classifier: str = "full"  # MNIST classifier: full | quick
    log_every: int = 50  # steps between logs
    ckpt_every: int = 1000  # steps between checkpoints

    def check(self):
        if self.downs not in (1, 2):
            raise ConfigError(f"downs: {self.downs}; a translator for 28x28 images downsamples 1 (28 -> 14) or 2 "
                              f"(28 -> 7) times")
        if self.pool_size < 0:
            raise ConfigError(f"pool_size: {self.pool_size}; use 0 (no history) or a number of past images > 0 (Zhu et al.: 50)")
        if self.digits not in ("digits20", "digits"):
            raise ConfigError(f"digits: {self.digits!r}; domain B is the built-in digits in MNIST's 20x20 box "
                              "(digits20) or stretched over 28x28 (digits)")


@recipe("cyclegan-mnist-digits", lecture=11, section="Conditional GANs (cycle consistency)", config=CycleGANConfig,
        datasets=("mnist",),
        presets={"quick": {"steps": 10, "width": 4, "blocks": 1, "d_width": 8, "n_eval_a": 300, "clf_epochs": 1,
                           "classifier": "quick", "log_every": 5, "ckpt_every": 0}},
        target=Target("digit_kept_min", ">=", 0.8, "issue #7: >= 80% of translations keep their digit, both ways"))
def cyclegan_mnist_digits(cfg: CycleGANConfig, run: Run) -> dict[str, float]:
    """CycleGAN MNIST <-> upsampled 8x8 digits: digit identity kept by the target domain's classifier."""
    xa, ya = by_name("mnist", "train")
    xb, yb = by_name(cfg.digits, "train")
    xa_test, ya_test = by_name("mnist", "test")
    xb_test, yb_test = by_name(cfg.digits, "test")
    G_ab, G_ba = make_translators(cfg)
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

    cfg = from_dict(CycleGANConfig, {"warp": False, **saved["config"]})  # runs older than the option had none
    G_ab, G_ba = make_translators(cfg)
    G_ab.load_state_dict(load_run_weights(run_dir, "G_ab"))
    G_ba.load_state_dict(load_run_weights(run_dir, "G_ba"))
    n = max(1, min(args.n, 64))
    g = torch.Generator().manual_seed(args.seed)
    xa, _ = by_name("mnist", "test")
    xb, _ = by_name(cfg.digits, "test")
    a = xa[torch.randperm(len(xa), generator=g)[:n]]
    b = xb[torch.randperm(len(xb), generator=g)[:n]]
    rows = torch.cat([SQ.to_unit(a), translate(G_ab, a), SQ.to_unit(b), translate(G_ba, b)])
    out = write_grid(args.out, rows, nrow=n)
    return f"wrote rows (MNIST, MNIST->digits, digits, digits->MNIST) of {n} to {out}"
