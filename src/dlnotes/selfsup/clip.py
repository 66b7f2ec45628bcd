"""CLIP: contrastive language-image pretraining (Radford et al. 2021), as the notes describe it.

Two towers map an image and a caption into one embedding space: the image tower ``g_v`` (a conv
net) and the text tower ``g_l`` (a small causal Transformer over word tokens whose feature at the
end-of-text token is the caption's summary). With L2-normalised embeddings ``I_i = g_v(x_i)``,
``T_j = g_l(t_j)`` of a minibatch of ``B`` pairs and a learnable temperature (``s = exp(logit_scale)``,
initialised at 1/0.07 and capped at 100), the logits are ``L = s I T^T`` and the loss is symmetric::

    loss = ( CE(L, arange(B)) + CE(L^T, arange(B)) ) / 2

image -> its caption among the batch's captions, and caption -> its image among the batch's images:
matching pairs are pulled together, every other image-caption pair of the batch pushed apart.

Data: captions built from labelled images with varied templates and attributes measured from the
image itself: for digits the stroke thickness, slant and size; for Fashion-MNIST class names,
synonyms, short descriptions, brightness and size. Zero-shot classification embeds one prompt per
class (averaged over several prompt templates never used in training: *prompt ensembling*) and
picks the class whose text embedding is closest to the image's. Retrieval recall@k ranks the
captions of a test set for each image (and images for each caption).

Public API reused by the text-conditioned diffusion model: :class:`CaptionTokenizer`,
:class:`TextEncoder`, :func:`clip_loss`, :class:`CLIP`, :func:`load_clip`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sampling import StepSampler
from ..engine.run import load_run_weights
from ..engine import ConfigError, Run, Target, recipe
from ..nn.backbones import Conv4, to_float
from ..sequence.transformer import LearnedPositions, TransformerEncoder
from .augment import random_affine


# ----------------------------------------------------------------------------- text
class CaptionTokenizer:
    """Lower-cased word tokens (letters or single digits); ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``."""

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
    PAD, BOS, EOS, UNK = 0, 1, 2, 3

    def __init__(self, words, max_len: int = 24):
        self.itos = list(self.SPECIALS) + sorted(set(words) - set(self.SPECIALS))
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.max_len = max_len

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z]+|[0-9]", text.lower())

    @classmethod
    def build(cls, texts, max_len: int = 24) -> "CaptionTokenizer":
        return cls({w for t in texts for w in cls.words(t)}, max_len)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """``(B, T)`` ids: ``<bos> words <eos> <pad>...``, truncated to ``max_len`` (``<eos>`` kept)."""
        rows = []
        for t in texts:
            ids = [self.stoi.get(w, self.UNK) for w in self.words(t)][: self.max_len - 2]
            rows.append([self.BOS] + ids + [self.EOS])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [self.PAD] * (width - len(r)) for r in rows])

    def to_json(self) -> str:
        return json.dumps({"itos": self.itos, "max_len": self.max_len})

    @classmethod
    def from_json(cls, text: str) -> "CaptionTokenizer":
        d = json.loads(text)
        tok = cls([], d["max_len"])
        tok.itos, tok.stoi = d["itos"], {w: i for i, w in enumerate(d["itos"])}
        return tok


class TextEncoder(nn.Module):
    """Token embedding + learned positions -> causal pre-norm Transformer -> feature at ``<eos>``
    -> linear projection: ``(B, T)`` ids to ``(B, embed_dim)``. ``tokens(ids)`` gives all positions."""

    def __init__(self, vocab_size: int, embed_dim: int = 64, d_model: int = 128, n_layers: int = 2,
                 n_heads: int = 4, max_len: int = 32, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.positions = LearnedPositions(d_model, max_len)
        self.transformer = TransformerEncoder(n_layers, d_model, n_heads, dropout=dropout, norm_first=True,
                                              causal=True)
        self.proj = nn.Linear(d_model, embed_dim, bias=False)

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-token features ``(B, T, d_model)`` (causal: position t sees tokens <= t)."""
        pad = ids == CaptionTokenizer.PAD
        return self.transformer(self.positions(self.embed(ids)), key_padding_mask=pad)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.tokens(ids)  # (B, T, C)
        eos = (ids == CaptionTokenizer.EOS).int().argmax(dim=1)  # (B,) position of <eos>
        return self.proj(h[torch.arange(len(ids), device=ids.device), eos])  # (B, E)


class ImageEncoder(nn.Module):
    """4 conv blocks (pooling after the first three, 64x3x3 on 28x28) -> linear to ``embed_dim``."""

    def __init__(self, embed_dim: int = 64, width: int = 64):
        super().__init__()
        self.features = Conv4(width=width, pool_blocks=3)
        self.out_dim = self.features.out_dim
        self.proj = nn.Linear(self.features.out_dim, embed_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x))  # (B, E)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss over a batch of ``B`` matching (image, text) pairs."""
    i = F.normalize(image_emb, dim=-1)
    t = F.normalize(text_emb, dim=-1)
    logits = logit_scale.exp() * i @ t.T  # (B, B): row = image, column = caption
    labels = torch.arange(len(i), device=i.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class CLIP(nn.Module):
    MAX_LOGIT_SCALE = math.log(100.0)

    def __init__(self, vocab_size: int, embed_dim: int = 64, width: int = 64, d_model: int = 128,
                 n_layers: int = 2, n_heads: int = 4, max_len: int = 32):
        super().__init__()
        self.image = ImageEncoder(embed_dim, width)
        self.text = TextEncoder(vocab_size, embed_dim, d_model, n_layers, n_heads, max_len)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(x), dim=-1)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(ids), dim=-1)

    def loss(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.logit_scale.clamp_(max=self.MAX_LOGIT_SCALE)
        return clip_loss(self.image(x), self.text(ids), self.logit_scale)


# ----------------------------------------------------------------------------- captions
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FASHION_NAMES = [  # (names and synonyms, short descriptions)
    (["t-shirt", "tee", "top"], ["a short sleeved top", "a casual shirt"]),
    (["trouser", "pair of trousers", "pants"], ["long pants with two legs", "clothing for the legs"]),
    (["pullover", "sweater", "jumper"], ["a warm top with long sleeves", "knitwear for cold days"]),
    (["dress", "gown"], ["a one piece garment for women", "a long garment worn by women"]),
    (["coat", "jacket"], ["outerwear with long sleeves and buttons", "a warm layer for outdoors"]),
    (["sandal", "summer shoe"], ["an open shoe with straps", "light open footwear"]),
    (["shirt", "blouse"], ["a top with a collar and buttons", "a buttoned top"]),
    (["sneaker", "trainer", "sports shoe"], ["a low shoe for running", "athletic footwear"]),
    (["bag", "handbag", "purse"], ["a bag with a handle for carrying things", "an accessory for carrying items"]),
    (["ankle boot", "boot"], ["a shoe that covers the ankle", "a heeled boot"]),
]
DIGIT_TEMPLATES = ["a handwritten digit {w}", "the number {n}, {a}", "a {a} handwritten {w}", "digit {n}",
                   "a photo of the digit {w}", "{a} writing of the number {w}", "the handwritten number {n}",
                   "an image of a {a} {n}"]
FASHION_TEMPLATES = ["a photo of a {c}", "a {a} {c}", "an image of a {c}, {d}", "{d}", "a product photo of a {c}",
                     "a {c}: {d}", "a {a} photo of a {c}", "clothing item: {c}"]
# zero-shot prompts: none of these strings is produced by the training templates above
DIGIT_PROMPTS = ["a picture of the digit {w}", "this is the number {n}", "a handwritten number {w}",
                 "a drawing of the number {n}"]
FASHION_PROMPTS = ["a picture of a {c}", "this is a {c}", "a photo of the {c}", "a picture of the {c}"]


def image_attributes(images: torch.Tensor, labels: torch.Tensor) -> list[dict[str, str]]:
    """Words measured from each ``(H, W)`` uint8 image, quantised into tertiles within its class:
    ink area (``thin``/``thick`` strokes, ``small``/``large`` items), slant from the second moments
    of the ink (``slanted left``/``upright``/``slanted right``), height (``short``/``tall``) and the
    mean ink brightness (``dark``/``bright``)."""
    x = images.float() / 255  # (N, H, W)
    n, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    mass = x.sum((1, 2)).clamp_min(1e-6)
    my, mx = (x * ys).sum((1, 2)) / mass, (x * xs).sum((1, 2)) / mass
    cov = (x * (ys - my[:, None, None]) * (xs - mx[:, None, None])).sum((1, 2)) / mass
    var_y = (x * (ys - my[:, None, None]) ** 2).sum((1, 2)) / mass
    slant = -cov / var_y.clamp_min(1e-6)  # > 0: top leans right (image rows grow downwards)
    rows = (x > 0.3).any(2).float()
    height = rows.sum(1)
    area = (x > 0.5).float().sum((1, 2))
    bright = (x * (x > 0.3)).sum((1, 2)) / (x > 0.3).float().sum((1, 2)).clamp_min(1)

    def tertile(v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(n, dtype=torch.long)
        for c in labels.unique():
            m = labels == c
            lo, hi = torch.quantile(v[m], torch.tensor([1 / 3, 2 / 3]))
            out[m] = (v[m] > lo).long() + (v[m] > hi).long()
        return out

    t_area, t_h, t_b = tertile(area), tertile(height), tertile(bright)
    out = []
    for i in range(n):
        s = slant[i].item()
        out.append({"stroke": ["thin", "regular", "thick"][t_area[i]],
                    "size": ["small", "medium", "large"][t_area[i]],
                    "height": ["short", "medium", "tall"][t_h[i]],
                    "slant": "slanted right" if s > 0.15 else ("slanted left" if s < -0.15 else "upright"),
                    "tone": ["dark", "grey", "bright"][t_b[i]]})
    return out


def digit_caption(label: int, attrs: dict, g: torch.Generator) -> str:
    t = DIGIT_TEMPLATES[int(torch.randint(len(DIGIT_TEMPLATES), (1,), generator=g))]
    a = [attrs["stroke"], attrs["slant"], attrs["height"]][int(torch.randint(3, (1,), generator=g))]
    return t.format(w=DIGIT_WORDS[label], n=label, a=a)


def fashion_caption(label: int, attrs: dict, g: torch.Generator) -> str:
    names, descs = FASHION_NAMES[label]
    t = FASHION_TEMPLATES[int(torch.randint(len(FASHION_TEMPLATES), (1,), generator=g))]
    c = names[int(torch.randint(len(names), (1,), generator=g))]
    d = descs[int(torch.randint(len(descs), (1,), generator=g))]
    a = [attrs["size"], attrs["tone"]][int(torch.randint(2, (1,), generator=g))]
    return t.format(c=c, d=d, a=a)


def class_prompts(domain: str) -> list[list[str]]:
    """Per class, the zero-shot prompts (templates x names) to ensemble."""
    if domain == "mnist":
        return [[p.format(w=DIGIT_WORDS[k], n=k) for p in DIGIT_PROMPTS] for k in range(10)]
    return [[p.format(c=name) for p in FASHION_PROMPTS for name in FASHION_NAMES[k][0][:2]] for k in range(10)]


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def text_embeddings(model: CLIP, tok: CaptionTokenizer, prompts: list[list[str]], device="cpu") -> torch.Tensor:
    """Prompt ensembling: the normalised mean of each class's normalised prompt embeddings ``(C, E)``."""
    out = []
    for group in prompts:
        e = model.encode_text(tok.encode(group).to(device))  # (P, E)
        out.append(F.normalize(e.mean(0), dim=-1))
    return torch.stack(out)


@torch.no_grad()
def image_embeddings(model: CLIP, images: torch.Tensor, batch: int = 1000, device="cpu") -> torch.Tensor:
    return torch.cat([model.encode_image(to_float(images[i: i + batch]).to(device)).cpu()
                      for i in range(0, len(images), batch)])


@torch.no_grad()
def zero_shot_accuracy(model: CLIP, tok, images, labels, prompts, device="cpu") -> float:
    t = text_embeddings(model, tok, prompts, device).cpu()  # (C, E)
    return (image_embeddings(model, images, device=device) @ t.T).argmax(-1).eq(labels).float().mean().item()


@torch.no_grad()
def retrieval_recall(model: CLIP, tok, images, captions: list[str], ks=(1, 5, 10), device="cpu") -> dict[str, float]:
    """Image->text and text->image recall@k on paired data; a hit is the paired item or any item
    with the identical caption text (captions built from templates repeat)."""
    i = image_embeddings(model, images, device=device)
    t = torch.cat([model.encode_text(tok.encode(captions[j: j + 500]).to(device)).cpu()
                   for j in range(0, len(captions), 500)])
    sim = i @ t.T  # (N, N)
    ids = {c: k for k, c in enumerate(dict.fromkeys(captions))}
    cid = torch.tensor([ids[c] for c in captions])
    same = cid[:, None] == cid[None, :]  # (N, N): caption j is a correct text for image i
    out = {}
    for k in ks:
        top_t = sim.topk(k, dim=1).indices  # texts for each image
        out[f"i2t_recall@{k}"] = same.gather(1, top_t).any(1).float().mean().item()
        top_i = sim.T.topk(k, dim=1).indices  # images for each text
        out[f"t2i_recall@{k}"] = same.T.gather(1, top_i).any(1).float().mean().item()
    return out


def training_vocabulary() -> list[str]:
    """Every word the caption generators can produce (templates, names, descriptions, attributes)."""
    texts = DIGIT_TEMPLATES + FASHION_TEMPLATES + DIGIT_WORDS + [str(k) for k in range(10)]
    texts += [n for names, descs in FASHION_NAMES for n in names + descs]
    texts += ["thin regular thick small medium large short tall slanted right left upright dark grey bright"]
    return sorted({w for t in texts for w in CaptionTokenizer.words(t.replace("{", " ").replace("}", " "))}
                  - {"w", "n", "a", "c", "d"} | {"a"})


# ----------------------------------------------------------------------------- recipe
@dataclass
class CLIPConfig:
    datasets: str = "mnist,fashion_mnist"  # image sets captioned together (mnist, fashion_mnist, digits)
    train_limit: int = 0  # use only the first N training images of each set (0: all)
    embed_dim: int = 64  # shared embedding width
    width: int = 64  # image tower conv filters
    d_model: int = 128  # text tower width
    n_layers: int = 2  # text tower Transformer blocks
    n_heads: int = 4  # text tower attention heads
    batch: int = 256  # image-caption pairs per step
    epochs: float = 10.0  # passes over the captioned images
    lr: float = 1e-3  # AdamW learning rate (cosine decay)
    weight_decay: float = 0.05  # AdamW weight decay
    augment: bool = True  # small random affine distortions of the images
    eval_limit: int = 0  # evaluate zero-shot on the first N test images of each set (0: all)
    retrieval_n: int = 1000  # test pairs for recall@k
    probe_fraction: float = 0.1  # labels for the linear probe of the image tower
    log_every: int = 20  # steps between logged losses
    ckpt_every: int = 500  # steps between checkpoints


def load_captioned(cfg: CLIPConfig, split: str):
    """Images, labels, attributes and domain name of every dataset in ``cfg.datasets``."""
    from ..data.images import by_name

    sets = []
    for name in cfg.datasets.split(","):
        name = name.strip()
        if name not in ("mnist", "fashion_mnist", "digits"):
            raise ConfigError(f"datasets: unknown set {name!r}; use a comma-separated list of mnist, fashion_mnist "
                              "and digits")
        # digits: the built-in 8x8 digits in MNIST's centred 20x20 box, captioned as MNIST
        x, y = by_name("digits20" if name == "digits" else name, split)
        domain = "fashion_mnist" if name == "fashion_mnist" else "mnist"
        limit = cfg.train_limit if split == "train" else cfg.eval_limit
        if limit:
            x, y = x[:limit], y[:limit]
        sets.append((name, domain, x, y, image_attributes(x, y)))
    return sets


def captions_for(domain: str, labels: torch.Tensor, attrs: list[dict], g: torch.Generator) -> list[str]:
    make = digit_caption if domain == "mnist" else fashion_caption
    return [make(int(lbl), a, g) for lbl, a in zip(labels, attrs)]


def run_clip(cfg: CLIPConfig, run: Run) -> dict[str, float]:
    from .probe import features, label_subset, linear_probe

    train = load_captioned(cfg, "train")
    x_all = torch.cat([s[2] for s in train])
    y_all = torch.cat([s[3] for s in train])
    attrs = [a for s in train for a in s[4]]
    domains = [s[1] for s in train for _ in range(len(s[2]))]
    tok = CaptionTokenizer(training_vocabulary())
    run.save_text("tokenizer.json", tok.to_json())
    model = CLIP(len(tok), cfg.embed_dim, cfg.width, cfg.d_model, cfg.n_layers, cfg.n_heads, tok.max_len).to(run.device)
    net = run.prepare(model)
    steps_per_epoch = len(x_all) // cfg.batch
    total = max(1, int(cfg.epochs * steps_per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.05)
    sampler = StepSampler(len(x_all), cfg.batch, seed=torch.initial_seed(), rank=run.rank, world_size=run.world_size)
    run.watch(model=model, optimizer=opt, scheduler=sched)
    start = run.restore()
    seed = torch.initial_seed()
    run.print(f"CLIP: {sum(p.numel() for p in model.parameters())} parameters, vocabulary {len(tok)}, "
              f"{len(x_all)} captioned images, {total} steps")
    for step in run.steps(total, unit="pair", items_per_step=cfg.batch):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = sampler.indices(step)
        caps = [(digit_caption if domains[i] == "mnist" else fashion_caption)(int(y_all[i]), attrs[i], g)
                for i in idx.tolist()]
        x = to_float(x_all[idx].to(run.device))  # augmented on the model's device
        if cfg.augment:
            x = random_affine(x, g, degrees=8, shear=0.1, scale=(0.9, 1.1), translate=0.06)
        with run.autocast():
            loss = (net.module if hasattr(net, "module") else net).loss(x, tok.encode(caps).to(run.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step == total - 1:
            run.log(step, loss=loss.item(), temperature=float(1 / model.logit_scale.detach().exp()))
        else:
            run.log_check(step, loss=loss.item())
    run.checkpoint()
    train_s = run.elapsed
    if not run.is_main:
        return {}
    model.eval()
    result: dict[str, float] = {"train_s": train_s,
                                "throughput": cfg.batch * (run.step - start) / max(train_s, 1e-9)}
    test = load_captioned(cfg, "test")
    g = torch.Generator().manual_seed(0)
    for (name, domain, x, y, at), (_, _, xt, yt, _) in zip(test, train):
        tag = "mnist" if name in ("mnist", "digits") else "fashion"
        prompts = class_prompts(domain)
        result[f"zeroshot_{tag}"] = zero_shot_accuracy(model, tok, x, y, prompts, run.device)
        result[f"zeroshot_{tag}_single_prompt"] = zero_shot_accuracy(model, tok, x, y, [p[:1] for p in prompts],
                                                                     run.device)
        n = min(cfg.retrieval_n, len(x))
        for k, v in retrieval_recall(model, tok, x[:n], captions_for(domain, y[:n], at[:n], g),
                                     device=run.device).items():
            result[f"{tag}_{k}"] = v
        idx = label_subset(yt, cfg.probe_fraction)
        f_tr = features(model.image.features, xt[idx], device=run.device)
        f_te = features(model.image.features, x, device=run.device)
        result[f"probe_{tag}"] = linear_probe(f_tr, yt[idx], f_te, y)
        run.print(" ".join(f"{k}={v:.4f}" for k, v in result.items() if k.startswith(tag) or tag in k))
    result["accuracy"] = result.get("zeroshot_fashion", result.get("zeroshot_mnist"))
    result["logit_scale"] = float(model.logit_scale.detach().exp())
    return result


QUICK = {"datasets": "digits", "epochs": 8.0, "batch": 128, "width": 32, "d_model": 64, "n_layers": 1,
         "retrieval_n": 200, "probe_fraction": 1.0, "log_every": 5, "ckpt_every": 0}


@recipe("clip-mnist-fashion", lecture=13, section="Contrastive Language-Image Pretraining (CLIP)", config=CLIPConfig,
        datasets=("mnist", "fashion_mnist"), presets={"quick": QUICK},
        target=Target("accuracy", ">=", 0.70, "issue 9: zero-shot Fashion-MNIST with unseen prompts "
                                              "(and zeroshot_mnist >= 0.90)"))
def clip_mnist_fashion(cfg: CLIPConfig, run: Run) -> dict[str, float]:
    """CLIP (conv image tower + Transformer text tower) on captioned MNIST + Fashion-MNIST; zero-shot."""
    return run_clip(cfg, run)


def load_clip(run_dir: str | Path, device="cpu") -> tuple[CLIP, CaptionTokenizer, CLIPConfig]:
    """Rebuild a trained CLIP from a run directory (its config, tokenizer and latest checkpoint)."""

    from ..engine.config import from_dict

    run_dir = Path(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    cfg = from_dict(CLIPConfig, saved["config"])
    tok = CaptionTokenizer.from_json((run_dir / "tokenizer.json").read_text())
    weights = load_run_weights(run_dir)
    model = CLIP(len(tok), cfg.embed_dim, cfg.width, cfg.d_model, cfg.n_layers, cfg.n_heads, tok.max_len)
    model.load_state_dict(weights)
    return model.to(device).eval(), tok, cfg
