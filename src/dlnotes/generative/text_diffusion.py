"""Text-conditioned diffusion with cross-attention and classifier-free guidance (Lecture 12).

The notes: embed images and captions in one space with CLIP (:mod:`dlnotes.selfsup.clip`, a
conv image tower and a Transformer text tower trained with the symmetric contrastive loss), then
train ``f_theta(x_t, t, w) ~ eps`` where ``w`` is the embedded caption, fed to the U-Net by
cross-attention layers after the residual blocks (queries from image features, keys and values
from the caption's token features).

* Stage 1: CLIP on captioned images (captions from :mod:`dlnotes.selfsup.clip`'s templates), or a
  trained CLIP run given as ``clip_run``. Its text tower is then frozen.
* Stage 2: DDPM (:mod:`dlnotes.generative.diffusion`) with ``w = text.tokens(ids)`` (B, T, D) as
  the cross-attention context. With probability ``p_uncond`` the caption is replaced by the empty
  caption ``<bos><eos>`` so the same network also learns the unconditional ``eps_theta(x_t, t)``.
* Classifier-free guidance (Ho & Salimans, 2021) at sampling time:
  ``eps = eps_theta(x_t, t, empty) + s * (eps_theta(x_t, t, w) - eps_theta(x_t, t, empty))``.

Evaluation: for each class a training-style prompt ("a handwritten digit seven") and paraphrases
never produced by the caption templates (CLIP's zero-shot prompts, e.g. "a picture of the digit
seven", "this is the number 7"); the share of samples our classifier assigns to the named class.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.sampling import StepSampler
from ..engine import Run, Target, recipe
from ..engine.config import ConfigError
from ..engine.schedules import set_lr, warmup_cosine
from ..engine.run import load_run_weights
from ..engine.plots import write_grid
from ..selfsup import clip as C
from .diffusion import DDPMConfig, DDPMSchedule, build_unet, grade, to_unit, train_eps_model


@dataclass
class TextDiffusionConfig(DDPMConfig):
    caption_sets: str = "mnist"  # datasets captioned (mnist | fashion_mnist | digits = built-in 8x8 upscaled)
    epochs: float = 7.0  # DDPM passes: 7 already give 100% prompt accuracy (an H100 run), and fit a CPU hour
    train_limit: int = 0  # first N training images (0: all)
    clip_run: str = ""  # a trained clip-mnist-fashion run directory to reuse (empty: train CLIP here)
    clip_epochs: float = 3.0  # CLIP training passes when trained here
    clip_width: int = 32  # CLIP image tower width
    clip_d_model: int = 64  # CLIP text tower width (= cross-attention context width)
    clip_layers: int = 2  # CLIP text tower Transformer blocks
    p_uncond: float = 0.1  # probability of dropping the caption (classifier-free guidance training)
    guidance: float = 3.0  # guidance scale s at sampling
    n_per_prompt: int = 20  # samples per prompt in the evaluation
    sample_steps: int = 50  # DDIM steps for the evaluation samples

    def check(self):
        super().check()
        if self.sample_amp:
            raise ConfigError("sample_amp: true is for ddpm-mnist and latent-diffusion-mnist; this recipe's guided "
                              "sampler runs in fp32, so leave sample_amp false")


def train_clip(cfg: TextDiffusionConfig, images, captions, tok, run: Run) -> C.CLIP:
    torch.manual_seed(0)
    model = C.CLIP(len(tok), 64, cfg.clip_width, cfg.clip_d_model, cfg.clip_layers, 4, tok.max_len).to(run.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sampler = StepSampler(len(images), min(256, len(images)), seed=2)
    total = max(1, int(cfg.clip_epochs * sampler.steps_per_epoch))
    for step in range(total):
        set_lr(opt, warmup_cosine(step, total, 1e-3))
        idx = sampler.indices(step)
        loss = model.loss(images[idx].to(run.device), tok.encode([captions[i] for i in idx]).to(run.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == total - 1:
            run.log(step, clip_loss=loss.item())
    return model.eval()


class CaptionContext:
    """Frozen CLIP text tower -> (tokens (B, T, D), mask (B, T)) for the U-Net's cross-attention."""

    def __init__(self, text: C.TextEncoder, tok: C.CaptionTokenizer, device):
        self.text, self.tok, self.device = text.eval(), tok, device
        for p in self.text.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, captions: list[str]):
        ids = self.tok.encode(captions).to(self.device)  # (B, T)
        return {"context": self.text.tokens(ids), "context_mask": ids != C.CaptionTokenizer.PAD}


def guided_eps(model, ctx, uncond, scale: float):
    """Classifier-free guidance: eps_u + s (eps_c - eps_u), both from one batched call."""
    def eps_fn(x, t):
        pad = ctx["context"].shape[1] - uncond["context"].shape[1]
        u_ctx = torch.nn.functional.pad(uncond["context"], (0, 0, 0, max(0, pad)))
        u_mask = torch.nn.functional.pad(uncond["context_mask"], (0, max(0, pad)))
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([ctx["context"], u_ctx]),
                     torch.cat([ctx["context_mask"], u_mask]))
        e_c, e_u = both.chunk(2)
        return e_u + scale * (e_c - e_u)
    return eps_fn


def prompts_for(domain: str) -> tuple[list[str], list[list[str]]]:
    """Per class: one training-style prompt and the unseen paraphrases (CLIP's zero-shot prompts)."""
    if domain == "mnist":
        seen = [f"a handwritten digit {w}" for w in C.DIGIT_WORDS]
    else:
        seen = [f"a photo of a {names[0]}" for names, _ in C.FASHION_NAMES]
    return seen, C.class_prompts(domain)


@torch.no_grad()
def sample_prompts(model, encode, sched, prompts: list[str], n: int, cfg, device, seed: int = 0) -> torch.Tensor:
    caps = [p for p in prompts for _ in range(n)]
    ctx, uncond = encode(caps), encode([""] * len(caps))
    x = sched.ddim_sample(guided_eps(model, ctx, uncond, cfg.guidance), (len(caps), 1, 28, 28), cfg.sample_steps,
                          cfg.ddim_eta, torch.Generator().manual_seed(seed), clip=cfg.clip_x0, device=device,
                          eps_scale=cfg.ddim_eps_scale)
    return to_unit(x).cpu()


@recipe("text-diffusion-mnist", lecture=12, section="Text Conditioning", config=TextDiffusionConfig,
        datasets=("mnist",),
        presets={"quick": {"caption_sets": "digits", "clip_epochs": 2.0, "epochs": 1.0, "T": 200, "beta_T": 0.05,
                           "base": 16, "dropout": 0.0, "batch_size": 64, "lr": 1e-3, "ema": 0.9, "n_per_prompt": 1,
                           "sample_steps": 5, "grader": "quick", "clip_layers": 1, "ckpt_every": 0}},
        target=Target("sample_class_accuracy", ">=", 0.9, "issue 8: >= 90% of samples show the digit named in "
                      "the prompt (classifier-free guidance)"))
def text_diffusion_mnist(cfg: TextDiffusionConfig, run: Run) -> dict[str, float]:
    """CLIP text tower + cross-attention U-Net + classifier-free guidance on captioned digits."""
    ccfg = C.CLIPConfig(datasets=cfg.caption_sets, train_limit=cfg.train_limit)
    sets = C.load_captioned(ccfg, "train")
    g = torch.Generator().manual_seed(0)
    images = torch.cat([x for _, _, x, _, _ in sets])  # (N, 28, 28) uint8
    captions = sum((C.captions_for(dom, y, attrs, g) for _, dom, _, y, attrs in sets), [])
    domain = sets[0][1]
    if cfg.clip_run:
        clip, tok, _ = C.load_clip(cfg.clip_run, run.device)
    else:
        tok = C.CaptionTokenizer(C.training_vocabulary())
        clip = train_clip(cfg, images.float().unsqueeze(1) / 255.0, captions, tok, run)
    run.save_text("tokenizer.json", tok.to_json())
    encode = CaptionContext(clip.text, tok, run.device)
    data = images.float().unsqueeze(1) / 127.5 - 1  # (N, 1, 28, 28) in [-1, 1]
    sched = DDPMSchedule(cfg.T, cfg.beta_1, cfg.beta_T)
    model = build_unet(cfg, context_dim=clip.text.embed.embedding_dim)
    run.watch(text=clip.text)

    def cond_fn(idx, step):
        gen = torch.Generator().manual_seed(7919 * step + 1)
        drop = torch.rand(len(idx), generator=gen) < cfg.p_uncond
        return encode(["" if d else captions[i] for i, d in zip(idx.tolist(), drop.tolist())])

    ema_model, result = train_eps_model(model, sched, data, cfg, run, cond_fn=cond_fn)
    if run.is_main:
        seen, paraphrases = prompts_for(domain)
        labels = torch.arange(10).repeat_interleave(cfg.n_per_prompt)
        x_seen = sample_prompts(ema_model, encode, sched, seen, cfg.n_per_prompt, cfg, run.device)
        unseen = [group[k % len(group)] for k, group in enumerate(paraphrases)]
        x_unseen = sample_prompts(ema_model, encode, sched, unseen, cfg.n_per_prompt, cfg, run.device, seed=1)
        from ..engine.plots import save_image_grid
        save_image_grid(run, "samples_prompted", x_seen, nrow=cfg.n_per_prompt, title="rows: " + "; ".join(seen[:3]))
        save_image_grid(run, "samples_paraphrased", x_unseen, nrow=cfg.n_per_prompt,
                        title="rows: " + "; ".join(unseen[:3]))
        result.update(grade(x_seen, domain, cfg.grader, labels=labels))
        result.update(grade(x_unseen, domain, cfg.grader, prefix="paraphrase_", labels=labels))
    run.checkpoint()
    return result


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR --prompt "a handwritten seven" --n 16 --out grid.png``."""
    from ..engine.config import from_dict
    cfg = from_dict(TextDiffusionConfig, saved["config"])
    run_dir = Path(run_dir)
    tok = C.CaptionTokenizer.from_json((run_dir / "tokenizer.json").read_text())
    text = C.TextEncoder(len(tok), 64, cfg.clip_d_model, cfg.clip_layers, 4, tok.max_len)
    if cfg.clip_run:
        text = C.load_clip(cfg.clip_run)[0].text
    else:
        text.load_state_dict(load_run_weights(run_dir, "text"))
    model = build_unet(cfg, context_dim=text.embed.embedding_dim)
    model.load_state_dict(load_run_weights(run_dir, "ema"))
    model.eval()
    prompt = args.prompt or "a handwritten digit seven"
    x = sample_prompts(model, CaptionContext(text, tok, "cpu"), DDPMSchedule(cfg.T, cfg.beta_1, cfg.beta_T),
                       [prompt], args.n, cfg, "cpu", seed=args.seed)
    out = write_grid(args.out, x)
    return f"wrote {args.n} samples for {prompt!r} to {out}"
