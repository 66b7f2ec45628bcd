"""Tier 2: small learning tasks with thresholds, seconds each."""
from __future__ import annotations

import torch

from dlnotes.data.images import digits8x8
from dlnotes.data.sampling import StepSampler
from dlnotes.generative import flows as FL
from dlnotes.generative import flows2d as F2
from dlnotes.generative.autoregressive import PixelCNN, binarise
from dlnotes.generative.diffusion import DDPMSchedule, to_model_space
from dlnotes.generative.wavenet import WaveNet, entropy_nats, evaluate, mu_law_encode, plucked_melody
from dlnotes.nn.unet import UNet


def test_realnvp_learns_two_moons_beyond_a_gaussian():
    """A single Gaussian fitted to two moons scores 3.27 nats; a 250-step RealNVP fit goes below 2.5."""
    torch.manual_seed(0)
    train, test = F2.toy_data("moons", 4000, seed=1), F2.toy_data("moons", 2000, seed=2)
    gauss = 1 + FL.LOG2PI + 0.5 * float(torch.logdet(torch.cov(train.T)))
    assert 3.1 < gauss < 3.4
    m = F2.train_flow2d(F2.Flow2D("realnvp", couplings=6, hidden=32, layers=2), train, steps=250, batch=256, lr=5e-3)
    with torch.no_grad():
        nll = float(-m.log_prob(test).mean())
    assert nll < 2.5, nll


def test_tiny_ddpm_on_8x8_digits_lowers_its_loss():
    """Noise-prediction MSE on held-out digits: 1.0 for a network predicting 0, below 0.3 after 60 steps."""
    torch.manual_seed(0)
    data = to_model_space(digits8x8()[0])
    train, held = data[:1500], data[1500:]
    sched = DDPMSchedule(T=200, beta_T=0.05)
    net = UNet(1, base=16, mults=(1, 2), attn_levels=(1,))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sampler, g = StepSampler(len(train), 64, 0), torch.Generator().manual_seed(1)

    def held_loss():
        with torch.no_grad():
            return sched.loss(net, held, torch.Generator().manual_seed(123)).item()

    assert abs(held_loss() - 1.0) < 0.05  # the zero-initialised output layer predicts eps = 0
    for step in range(60):
        loss = sched.loss(net, train[sampler.indices(step)], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_loss() < 0.3


def test_pixelcnn_beats_independent_pixels_on_8x8_digits():
    """Binarised 8x8 digits: the best independent-Bernoulli model (26.7 nats) vs a PixelCNN after 100 steps."""
    torch.manual_seed(0)
    x = binarise(digits8x8()[0], seed=0)
    train, test = x[:1500], x[1500:]
    p = train.mean(0).clamp(1e-3, 1 - 1e-3)
    indep = float(-(test * p.log() + (1 - test) * (1 - p).log()).flatten(1).sum(1).mean())
    model = PixelCNN(hidden=32, blocks=2, out_hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sampler = StepSampler(len(train), 50, 0)
    for step in range(100):
        loss = model.nll(train[sampler.indices(step)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        nll = float(model.nll(test).mean())
    assert nll < indep - 1.5, (nll, indep)


def test_wavenet_predicts_a_plucked_string_better_than_its_histogram():
    """Held-out NLL per mu-law sample vs the order-0 entropy of the values (about 5.0 nats)."""
    torch.manual_seed(0)
    q = mu_law_encode(plucked_melody(4.0))
    train, held = q[:24000], q[24000:]
    h0 = entropy_nats(q, 256)
    model = WaveNet(256, res_ch=16, gate_ch=16, skip_ch=32, layers_per_stack=7, stacks=1)
    assert model.receptive_field > 8000 // 196  # sees a full period of the lowest note
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rf, win = model.receptive_field, 64
    for step in range(80):
        starts = torch.randint(0, len(train) - rf - win - 1, (8,))
        seq = train[starts[:, None] + torch.arange(rf + win + 1)]
        loss = torch.nn.functional.cross_entropy(model(seq[:, :-1])[:, :, -win:], seq[:, -win:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    held_nll = evaluate(model, held, "cpu")
    assert 4.5 < h0 < 5.5  # sustained notes: few near-silent samples
    assert held_nll < h0 - 0.3, (held_nll, h0)
