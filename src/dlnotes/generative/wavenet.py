"""WaveNet (Lecture 12): dilated causal convolutions for autoregressive sequence models.

The notes: ``P(x) = prod_i p(x[i] | x[0:i])``; unrolling it as a recurrence needs depth ``d``,
while WaveNet covers ``d`` past steps with ``log d`` layers of *dilated* convolutions. A causal
convolution pads only on the left, so output ``t`` depends on inputs ``<= t``; with kernel 2 and
dilations ``1, 2, 4, ..., 2^(L-1)`` the receptive field is ``2^L`` steps, and a stack repeated
``R`` times reaches ``R (2^L - 1) + 1`` (plus the first causal layer's ``k - 1``):

    receptive field = 1 + (k0 - 1) + sum_layers (k - 1) * dilation.

Each layer is a gated unit ``z = tanh(W_f * x) . sigmoid(W_g * x)``, a 1x1 convolution back to
the residual width added to the layer's input (residual connection), and another 1x1 to the
skip width; the skips of all layers are summed, passed through ReLU-1x1-ReLU-1x1 and give a
softmax over the next value. Output ``t`` predicts ``x[t+1]``.

Audio-like inputs are mu-law companded, ``f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` with
``mu = 255``, and quantised to 256 levels. No recorded audio ships with the package or the data
root, so the 1-D signal is a synthesised plucked-string melody (Karplus-Strong: a noise burst
through a delay line with an averaging low-pass, 8 kHz): real waveform structure (periodicity,
decay, note onsets) from a physical model.

Recipes: ``wavenet-mulaw`` (NLL per sample against the order-0 entropy of the quantised signal)
and ``wavenet-shakespeare`` (characters, validation nats/char beside the RNN/GPT recipes).

Two measured choices in ``wavenet-mulaw``'s defaults. *Signal length*: every note starts from its
own random noise burst, so a short signal holds few distinct waveforms to learn from. On 60 s
(about 240 notes) the model memorised them: the held-out loss rose from 1.80 nats at step 500 to
4.42 at step 4000 while the training loss fell to 0.59; on 600 s the held-out loss kept falling
(both on an H100, measured on an earlier version of the signal whose string loop read a
not-yet-computed sample once per period, so every note died out within about 0.1 s and 65% of the
signal was near silence). *Window*: every window needs one receptive field (1024 steps) of
context before its first scored position, so 8 windows of 1024 scored positions cost 2.6x less
than 32 windows of 256 for the same 8192 scored positions per step (0.68 s against 1.74 s, one
CPU thread, ``--amp bf16``).

``wavenet-shakespeare`` scores every position of its windows instead (``context=0``): a character
``t`` steps into a window sees only those ``t`` characters, the rest of its receptive field being
the causal convolutions' zero padding, as a GPT sees only its context. Evaluation still gives
every character its full 512 of context. For the same 4096 scored characters per step this costs
1.14 s against 6.1 s for 32 windows of 128 behind a full receptive field (one CPU thread), and it
learns more per step: the validation loss reached 1.62 nats/char in 1500 steps on this CPU, where
32 full-context windows of 128 gave 1.97 after 3000 steps (12M scored characters, an H100 run).
The validation loss flattens after about 1000 steps (first 20k validation characters: 1.65, 1.56,
1.56, 1.54 at steps 500, 750, 1000, 1250; training batches 1.18 at step 1100): the 1.1M-parameter
model starts to memorise the 1M-character text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine import Run, Target, recipe
from ..engine.config import ConfigError
from ..engine.run import load_run_weights
from ..engine.schedules import set_lr, warmup_cosine


class CausalConv1d(nn.Conv1d):
    """Conv1d padded ``(k - 1) * dilation`` on the left only: output t sees inputs <= t."""

    def __init__(self, c_in: int, c_out: int, k: int, dilation: int = 1):
        super().__init__(c_in, c_out, k, dilation=dilation)
        self.left = (k - 1) * dilation

    def forward(self, x):  # (B, C, T) -> (B, C_out, T)
        return super().forward(F.pad(x, (self.left, 0)))


class GatedResidualLayer(nn.Module):
    def __init__(self, res_ch: int, gate_ch: int, skip_ch: int, k: int, dilation: int):
        super().__init__()
        self.conv = CausalConv1d(res_ch, 2 * gate_ch, k, dilation)
        self.res = nn.Conv1d(gate_ch, res_ch, 1)
        self.skip = nn.Conv1d(gate_ch, skip_ch, 1)

    def forward(self, x):
        f, g = self.conv(x).chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)  # gated activation unit
        return x + self.res(z), self.skip(z)  # (residual output, skip contribution)


class WaveNet(nn.Module):
    def __init__(self, classes: int, res_ch: int = 64, gate_ch: int = 64, skip_ch: int = 128,
                 layers_per_stack: int = 8, stacks: int = 2, kernel: int = 2, first_kernel: int = 2):
        super().__init__()
        self.embed = nn.Embedding(classes, res_ch)  # = a 1x1 conv on one-hot inputs
        self.first = CausalConv1d(res_ch, res_ch, first_kernel)
        self.dilations = [2 ** i for _ in range(stacks) for i in range(layers_per_stack)]
        self.layers = nn.ModuleList(GatedResidualLayer(res_ch, gate_ch, skip_ch, kernel, d) for d in self.dilations)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip_ch, skip_ch, 1), nn.ReLU(), nn.Conv1d(skip_ch, classes, 1))
        self.receptive_field = 1 + (first_kernel - 1) + sum((kernel - 1) * d for d in self.dilations)

    def forward(self, ids):  # ids: (B, T) -> logits (B, classes, T); logits[:, :, t] predict ids[:, t+1]
        return self.trunk(self.embed(ids).transpose(1, 2))

    def trunk(self, x):  # embedded inputs (B, C, T) -> logits (B, classes, T)
        x = self.first(x)
        skips = 0
        for layer in self.layers:
            x, s = layer(x)
            skips = skips + s
        return self.head(skips)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, length: int, temperature: float = 1.0, generator=None) -> torch.Tensor:
        """Sample ``length`` values after ``prompt`` (1-D ids), feeding one receptive field each step."""
        seq = prompt.clone()
        for _ in range(length):
            ctx = seq[-self.receptive_field:][None]
            logits = self(ctx)[0, :, -1] / max(temperature, 1e-6)
            nxt = torch.multinomial(torch.softmax(logits.float().cpu(), -1), 1, generator=generator)
            seq = torch.cat([seq, nxt.to(seq.device)])
        return seq[len(prompt):]


# ----------------------------------------------------------------------------- mu-law signals
def mu_law_encode(x: torch.Tensor, mu: int = 255) -> torch.Tensor:
    """x in [-1, 1] -> integer levels 0..mu."""
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).long().clamp(0, mu)


def mu_law_decode(q: torch.Tensor, mu: int = 255) -> torch.Tensor:
    y = 2 * q.float() / mu - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu


def plucked_melody(seconds: float, sr: int = 8000, seed: int = 0) -> torch.Tensor:
    """Karplus-Strong plucked strings playing random notes of a pentatonic scale, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    scale = [0, 2, 4, 7, 9]
    out = np.zeros(int(seconds * sr))
    pos = 0
    while pos < len(out):
        semis = scale[rng.integers(5)] + 12 * rng.integers(0, 2)
        f0 = 196.0 * 2 ** (semis / 12)  # G3 upward
        dur = int(sr * rng.choice([0.125, 0.25, 0.5]))
        period = int(round(sr / f0))
        y = np.zeros(dur + period)
        y[:period] = rng.uniform(-1, 1, period)
        for start in range(period, len(y), period):  # vectorised over one period at a time
            t = np.arange(start, min(start + period, len(y)))
            # y[t] = 0.996 (y[t - p] + y[t - p - 1]) / 2: both reads lie in the finished previous period
            y[t] = 0.996 * 0.5 * (y[t - period] + y[np.maximum(t - period - 1, 0)])
        seg = 0.8 * y[period:] * rng.uniform(0.5, 1.0)
        n = min(len(seg), len(out) - pos)
        out[pos: pos + n] += seg[:n]
        pos += n
    out += 1e-4 * rng.standard_normal(len(out))  # a trace of recording noise
    return torch.tensor(np.clip(out, -1, 1), dtype=torch.float32)


def entropy_nats(ids: torch.Tensor, classes: int) -> float:
    p = torch.bincount(ids, minlength=classes).float()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


# ----------------------------------------------------------------------------- training
@dataclass
class WaveNetConfig:
    data: str = "mulaw"  # mulaw (plucked-string melody) | shakespeare | builtin-chars
    seconds: float = 600.0  # mulaw: length of the synthesised signal (last 10% held out)
    res_ch: int = 64  # residual channels
    gate_ch: int = 64  # gated-unit channels
    skip_ch: int = 128  # skip channels
    layers_per_stack: int = 9  # dilations 1..2^(L-1) per stack
    stacks: int = 2  # repetitions of the dilation stack
    window: int = 1024  # positions scored per training window
    context: int = -1  # unscored positions before them (-1: one receptive field, so each scored one has full context)
    batch_size: int = 8  # windows per step
    steps: int = 4000  # optimizer steps
    lr: float = 2e-3  # Adam learning rate (cosine-decayed to 5%)
    clip: float = 1.0  # max gradient norm
    eval_every: int = 500  # steps between validation passes (0: end only)
    max_eval: int = 111540  # validation positions scored (Shakespeare's full 10% by default)
    sample_len: int = 500  # values generated at the end
    ckpt_every: int = 500  # steps between checkpoints

    def check(self):
        if self.context < -1:
            raise ConfigError(f"context: {self.context}; use -1 (one receptive field) or a count of positions >= 0")


def load_stream(cfg: WaveNetConfig):
    """(train ids, valid ids, classes, decode) for the configured data."""
    if cfg.data == "mulaw":
        q = mu_law_encode(plucked_melody(cfg.seconds))
        n = int(0.9 * len(q))
        return q[:n], q[n:], 256, None
    from ..data import text as T
    text = T.shakespeare() if cfg.data == "shakespeare" else T.builtin_text()
    vocab = T.Vocab(sorted(set(text)))
    ids = torch.tensor(vocab.encode(text))
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], len(vocab), vocab


@torch.no_grad()
def evaluate(model: WaveNet, ids: torch.Tensor, device, chunk: int = 2048) -> float:
    """Mean NLL (nats) of ids[1:] given everything before, each chunk with a full receptive field."""
    model.eval()
    rf, total, count = model.receptive_field, 0.0, 0
    for s in range(1, len(ids), chunk):
        e = min(s + chunk, len(ids))
        lo = max(0, s - rf)
        ctx = ids[lo: e - 1].to(device)
        logits = model(ctx[None])[0, :, s - 1 - lo:]  # predictions for positions s..e-1
        total += float(F.cross_entropy(logits.T.float(), ids[s:e].to(device), reduction="sum"))
        count += e - s
    model.train()
    return total / count


def train_wavenet(cfg: WaveNetConfig, run: Run) -> dict[str, float]:
    cfg.check()
    train, valid, classes, vocab = load_stream(cfg)
    valid = valid[: cfg.max_eval + 1]
    model = WaveNet(classes, cfg.res_ch, cfg.gate_ch, cfg.skip_ch, cfg.layers_per_stack, cfg.stacks)
    net = run.prepare(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    run.watch(model=model, optimizer=opt)
    start = run.restore()
    rf = model.receptive_field
    run.print(f"WaveNet: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
              f"receptive field {rf} steps, dilations {model.dilations}")
    run.save_text("receptive_field.txt", f"{rf}\n")
    ctx = rf if cfg.context < 0 else cfg.context
    span = ctx + cfg.window  # inputs per window; the last `window` outputs are scored
    for step in run.steps(cfg.steps, unit="tok", items_per_step=cfg.batch_size * cfg.window):
        set_lr(opt, warmup_cosine(step, cfg.steps, cfg.lr, 0.05 * cfg.lr))  # half a cosine down to lr / 20
        g = torch.Generator().manual_seed(step * max(1, run.world_size) + run.rank)
        starts = torch.randint(0, len(train) - span - 1, (cfg.batch_size,), generator=g)
        idx = starts[:, None] + torch.arange(span + 1)
        seq = train[idx].to(run.device)  # (B, span + 1)
        with run.autocast():
            logits = net(seq[:, :-1])[:, :, -cfg.window:]  # (B, classes, window)
        loss = F.cross_entropy(logits.float(), seq[:, -cfg.window:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip))
        opt.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            run.log(step, loss=loss.item(), grad_norm=gn, lr=opt.param_groups[0]["lr"])
        else:
            run.log_check(step, loss=loss.item())
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps and run.is_main:
            run.log(step + 1, valid_loss=evaluate(model, valid[:20001], run.device))
    result = {}
    if run.is_main:
        v = evaluate(model, valid, run.device)
        gen = model.generate(valid[:rf].to(run.device), cfg.sample_len, 1.0, torch.Generator().manual_seed(0))
        result = {"val_loss": v, "receptive_field": rf, "steps": cfg.steps,
                  "throughput": cfg.batch_size * cfg.window * (run.step - start) / max(run.elapsed, 1e-9)}
        if vocab is None:
            h0 = entropy_nats(train, classes)
            result.update(order0_entropy=h0, val_loss_ratio=v / h0)
            run.save_figure("waveform", _wave_figure(valid[rf: rf + cfg.sample_len], gen.cpu()))
        else:
            result["valid_ppl"] = math.exp(v)
            run.save_text("sample.txt", vocab.decode(gen.tolist()))
    run.checkpoint()
    return result


def _wave_figure(real: torch.Tensor, gen: torch.Tensor):
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 1, figsize=(9, 4), sharex=True)
    axes[0].plot(mu_law_decode(real).numpy(), lw=0.7)
    axes[0].set_title("held-out signal after the prompt (mu-law decoded)")
    axes[1].plot(mu_law_decode(gen).numpy(), lw=0.7, c="C1")
    axes[1].set_title("WaveNet continuation (sampled)")
    fig.tight_layout()
    return fig


@recipe("wavenet-mulaw", lecture=12, section="Autoregressive models (WaveNet)", config=WaveNetConfig,
        presets={"quick": {"seconds": 8.0, "res_ch": 16, "gate_ch": 16, "skip_ch": 32, "layers_per_stack": 6,
                           "stacks": 1, "window": 128, "batch_size": 8, "steps": 80, "eval_every": 0,
                           "sample_len": 200, "ckpt_every": 50}},
        target=Target("val_loss_ratio", "<=", 0.5, "ours: held-out NLL at most half the order-0 entropy of the "
                      "mu-law values"))
def wavenet_mulaw(cfg: WaveNetConfig, run: Run) -> dict[str, float]:
    """WaveNet next-sample model on a mu-law quantised (256-level) plucked-string melody."""
    return train_wavenet(cfg, run)


@recipe("wavenet-shakespeare", lecture=12, section="Autoregressive models (WaveNet)", config=WaveNetConfig,
        datasets=("shakespeare",),
        presets={"full": {"data": "shakespeare", "res_ch": 96, "gate_ch": 96, "skip_ch": 192,
                          "layers_per_stack": 8, "window": 512, "context": 0, "batch_size": 8, "steps": 1500,
                          "eval_every": 250},
                 "quick": {"data": "builtin-chars", "res_ch": 32, "gate_ch": 32, "skip_ch": 64,
                           "layers_per_stack": 6, "stacks": 1, "window": 64, "context": 0, "batch_size": 16,
                           "steps": 80,
                           "eval_every": 0, "max_eval": 3000, "sample_len": 200, "ckpt_every": 50}},
        target=Target("val_loss", "<=", 1.88, "nanoGPT's CPU shakespeare-char config: val loss 1.88"))
def wavenet_shakespeare(cfg: WaveNetConfig, run: Run) -> dict[str, float]:
    """Character-level WaveNet on Tiny Shakespeare (same 90/10 split as the RNN and GPT recipes)."""
    return train_wavenet(cfg, run)


def sample_cli(run_dir: Path, saved: dict, args) -> str:
    """``dlnotes sample RUN_DIR``: text (characters) or a PNG of a generated waveform (--out)."""
    from ..engine.config import from_dict
    cfg = from_dict(WaveNetConfig, saved["config"])
    train, valid, classes, vocab = load_stream(cfg)
    model = WaveNet(classes, cfg.res_ch, cfg.gate_ch, cfg.skip_ch, cfg.layers_per_stack, cfg.stacks)
    model.load_state_dict(load_run_weights(Path(run_dir)))
    g = torch.Generator().manual_seed(args.seed)
    if vocab is not None:
        prompt = torch.tensor(vocab.encode(list(args.prompt or "\n")))
        return (args.prompt or "") + vocab.decode(model.generate(prompt, args.length, args.temperature, g).tolist())
    gen = model.generate(valid[: model.receptive_field], args.length, 1.0, g)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    rf = model.receptive_field
    _wave_figure(valid[rf: rf + args.length], gen).savefig(out)
    return f"wrote a {args.length}-sample waveform to {out}"
