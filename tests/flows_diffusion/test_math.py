"""Tier 1: flows invert and their log-determinants match autograd's Jacobian; masked and causal
convolutions never look ahead; DDPM's closed form matches the iterated forward process; DDIM with
eta = 1 on every step is DDPM's sampler; the U-Net keeps shapes and uses its conditioning."""
from __future__ import annotations

import math

import pytest
import torch

from dlnotes.generative import flows as FL
from dlnotes.generative import flows2d as F2
from dlnotes.generative.autoregressive import MaskedConv2d, PixelCNN
from dlnotes.generative.diffusion import DDPMSchedule
from dlnotes.generative.wavenet import CausalConv1d, WaveNet, mu_law_decode, mu_law_encode, plucked_melody
from dlnotes.nn.unet import UNet, timestep_embedding


def _perturb(m, scale=0.2, seed=0):
    """Random non-zero weights everywhere (the flows start as the identity by construction)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def _check_layer(layer, x):
    """decode(encode(x)) == x to 1e-5 and logdet == log|det d encode / dx| from autograd, per example; in
    float64 the log-determinant must agree to 1e-9 (a silent float32 step anywhere would miss that)."""
    z, logdet = layer.encode(x)
    assert z.shape[0] == x.shape[0]
    back = layer.decode(z).reshape(x.shape)
    assert (back - x).abs().max() < 1e-5
    for i in range(x.shape[0]):
        J = torch.autograd.functional.jacobian(lambda v: layer.encode(v[None])[0][0].flatten(), x[i], vectorize=True)
        J = J.reshape(x[i].numel(), x[i].numel())
        sign, ref = torch.linalg.slogdet(J)
        assert sign != 0
        tol = 1e-9 if x.dtype == torch.float64 else 1e-5
        assert abs(float(ref) - float(logdet[i].detach())) < tol * max(1.0, abs(float(ref)))


def test_additive_coupling_block_inverts_and_is_volume_preserving():
    idx = torch.arange(6)
    block = _perturb(FL.ReversibleBlock(idx[0::2], idx[1::2], hidden=8, layers=2).double())
    x = torch.randn(4, 6, dtype=torch.float64)
    _check_layer(block, x)
    assert torch.all(block.encode(x)[1] == 0)


def test_diagonal_scaling():
    _check_layer(_perturb(FL.DiagonalScaling(5).double()), torch.randn(3, 5, dtype=torch.float64))


@pytest.mark.parametrize("prior", ["logistic", "gaussian"])
def test_nice_model_and_its_prior_density(prior):
    m = _perturb(FL.NICE(8, hidden=8, layers=2, blocks=3, prior=prior).double())
    x = torch.randn(3, 8, dtype=torch.float64)
    _check_layer(m, x)
    grid = torch.linspace(-40, 40, 200001, dtype=torch.float64)[:, None]
    logp = FL.logistic_logp(grid) if prior == "logistic" else FL.gaussian_logp(grid)
    assert abs(float(logp.exp().sum() * (grid[1, 0] - grid[0, 0])) - 1) < 1e-6  # a normalised density


def test_affine_coupling_vector_and_image_masks():
    m = FL.AffineCoupling(torch.tensor([1.0, 0.0, 1.0, 0.0]), FL.mlp(4, 8, 8, 2), 4).double()
    _check_layer(_perturb(m), torch.randn(3, 4, dtype=torch.float64))
    masks = (FL.checkerboard(2, 4, 4, 0), FL.checkerboard(2, 4, 4, 1), FL.channel_mask(2, 0), FL.channel_mask(2, 1))
    for mask in masks:
        m = _perturb(FL.AffineCoupling(mask, FL.conv_net(2, 4, 1), 2).double()).eval()
        _check_layer(m, torch.randn(2, 2, 4, 4, dtype=torch.float64))


def test_affine_scale_is_tanh_bounded():
    m = FL.AffineCoupling(torch.tensor([1.0, 0.0]), FL.mlp(2, 4, 8, 1), 2)
    with torch.no_grad():
        m.net[-1].weight.fill_(1e3)
    _, logdet = m.encode(torch.randn(50, 2) * 10)
    assert logdet.abs().max() <= m.c.abs().sum() + 1e-5


def test_masks_and_squeeze():
    cb = FL.checkerboard(1, 4, 4, 0)[0]
    assert cb.sum() == 8 and cb[0, 0] == 0 and cb[0, 1] == 1 and cb[1, 0] == 1
    assert torch.equal(FL.channel_mask(4, 0).flatten(), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    x = torch.arange(2 * 3 * 4 * 6.0).view(2, 3, 4, 6)
    s = FL.squeeze(x)
    assert s.shape == (2, 12, 2, 3)
    assert torch.equal(s[0, :4, 0, 0], torch.tensor([x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 0], x[0, 0, 1, 1]]))
    assert torch.equal(FL.unsqueeze(s), x)


def test_realnvp_multiscale_and_logit_transform():
    m = _perturb(FL.RealNVP((1, 4, 4), scales=2, hidden=4, blocks=1).double()).eval()
    _check_layer(m, torch.randn(2, 1, 4, 4, dtype=torch.float64))
    assert m.z_shapes == [(2, 2, 2), (2, 2, 2)]
    m3 = _perturb(FL.RealNVP((1, 4, 4), scales=3, hidden=4, blocks=1).double()).eval()
    assert m3.z_shapes == [(2, 2, 2), (4, 1, 1), (4, 1, 1)]
    _check_layer(m3, torch.randn(1, 1, 4, 4, dtype=torch.float64))
    lt = FL.LogitTransform(0.05)
    _check_layer(lt, torch.rand(2, 1, 3, 3, dtype=torch.float64) * 0.98 + 0.01)


def test_realnvp_under_bf16_autocast_stays_exactly_invertible_in_fp32():
    """--amp bf16 runs only the coupling nets in bf16: (s, t) come from the kept half u, which encode and
    decode see bit for bit, so the map still inverts to fp32 precision and z, logdet stay fp32."""
    m = _perturb(FL.RealNVP((1, 8, 8), scales=2, hidden=8, blocks=1), scale=0.05).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for layer in m.levels[0][:3]:  # each coupling on its own (full-resolution checkerboards)
            s, t = layer._s_t(x * layer.mask)  # the scale and shift enter the coupling arithmetic in fp32
            assert s.dtype == t.dtype == torch.float32
            z, logdet = layer.encode(x)
            assert z.dtype == logdet.dtype == torch.float32
            assert (layer.decode(z) - x).abs().max() < 1e-5
        z, logdet = m.encode(x)
        back = m.decode(z)
    assert z.dtype == logdet.dtype == torch.float32
    assert (back - x).abs().max() < 1e-4
    assert (m.encode(x)[1] - logdet).abs().max() > 0  # the nets did run in bf16


def test_flow2d_change_of_variables_integrates_to_one():
    torch.manual_seed(0)
    for kind in ("nice", "realnvp"):
        m = _perturb(F2.Flow2D(kind, couplings=4, hidden=16, layers=2), 0.3).double()
        g = torch.linspace(-12, 12, 601, dtype=torch.float64)
        xx, yy = torch.meshgrid(g, g, indexing="xy")
        with torch.no_grad():
            p = m.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
        assert abs(float(p.sum()) * float(g[1] - g[0]) ** 2 - 1) < 0.02, kind


def test_bits_per_dim_of_uniform_model_is_8():
    assert torch.allclose(FL.bits_per_dim(torch.zeros(4), 4), torch.full((4,), 8.0))
    assert FL.dequantise(torch.full((2, 2, 2), 255, dtype=torch.uint8)).max() < 1.0


# ----------------------------------------------------------------------------- autoregressive
def test_masked_conv_masks():
    a, b = MaskedConv2d("A", 1, 1, 3).mask[0, 0], MaskedConv2d("B", 1, 1, 3).mask[0, 0]
    assert torch.equal(a, torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    assert torch.equal(b, torch.tensor([[1.0, 1, 1], [1, 1, 0], [0, 0, 0]]))


def test_pixelcnn_never_sees_current_or_future_pixels():
    torch.manual_seed(0)
    model = _perturb(PixelCNN(hidden=8, blocks=2, out_hidden=8), 0.1).double()
    h = w = 6
    for i, j in [(0, 0), (2, 3), (5, 5), (3, 0)]:
        x = torch.rand(1, 1, h, w, dtype=torch.float64, requires_grad=True)
        model(x)[0, 0, i, j].backward()
        grad = x.grad[0, 0]
        raster = torch.arange(h * w).view(h, w)
        assert grad[raster >= i * w + j].abs().max() == 0  # current and later pixels: no influence
        if (i, j) != (0, 0):
            assert grad[raster < i * w + j].abs().max() > 0  # earlier pixels do matter


def test_pixelcnn_nll_is_sum_of_conditionals():
    torch.manual_seed(0)
    model = PixelCNN(hidden=8, blocks=1, out_hidden=8)
    x = (torch.rand(2, 1, 4, 4) < 0.5).float()
    p = torch.sigmoid(model(x))
    ref = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    assert torch.allclose(model.nll(x), ref, atol=1e-4)


# ----------------------------------------------------------------------------- WaveNet
def test_plucked_notes_sustain_between_onsets():
    """Karplus-Strong reads only the finished previous period: notes ring on instead of dying within a
    few periods (a loop that read one not-yet-computed zero per period left 65% near silence)."""
    x = plucked_melody(4.0)
    assert (x.abs() < 1e-3).float().mean() < 0.1
    assert x.abs().max() <= 1.0


def test_causal_conv_and_wavenet_receptive_field():
    torch.manual_seed(0)
    conv = CausalConv1d(1, 1, 3, dilation=2)
    x = torch.randn(1, 1, 20, requires_grad=True)
    conv(x)[0, 0, 10].backward()
    nz = (x.grad[0, 0] != 0).nonzero().flatten().tolist()
    assert nz == [6, 8, 10]
    model = WaveNet(10, res_ch=8, gate_ch=8, skip_ch=8, layers_per_stack=4, stacks=2).double()
    assert model.receptive_field == 1 + 1 + 2 * (1 + 2 + 4 + 8)
    T, t = 80, 70
    x = torch.randn(1, 8, T, dtype=torch.float64, requires_grad=True)
    model.trunk(x)[0, :, t].sum().backward()
    seen = (x.grad[0].abs().sum(0) != 0).nonzero().flatten()
    assert int(seen.max()) == t  # nothing after t
    assert int(seen.min()) == t - model.receptive_field + 1  # exactly the receptive field


def test_mu_law_roundtrip():
    x = torch.linspace(-1, 1, 1001)
    q = mu_law_encode(x)
    assert q.min() == 0 and q.max() == 255
    assert (mu_law_decode(q) - x).abs().max() < 0.025  # fine steps near 0, coarse near +-1
    small = torch.linspace(-0.01, 0.01, 101)
    assert (mu_law_decode(mu_law_encode(small)) - small).abs().max() < 3e-4


# ----------------------------------------------------------------------------- diffusion
def test_closed_form_q_matches_iterated_forward_process():
    sched = DDPMSchedule(T=1000)
    assert abs(float(sched.abar[1000]) - math.exp(torch.log(1 - sched.betas[1:]).sum().item())) < 1e-12
    x0 = torch.tensor([-0.8, 0.0, 0.6], dtype=torch.float64).repeat(20000, 1)
    for t in (1, 10, 300):
        g = torch.Generator().manual_seed(t)
        it = sched.forward_chain(x0, t, g)
        cf = sched.q_sample(x0.float(), torch.full((len(x0),), t), torch.randn(x0.shape, generator=g)).double()
        for chain in (it, cf):
            assert torch.allclose(chain.mean(0), math.sqrt(float(sched.abar[t])) * x0[0], atol=0.03)
            sd = torch.full((3,), math.sqrt(1 - float(sched.abar[t])), dtype=torch.float64)
            assert torch.allclose(chain.std(0), sd, rtol=0.04, atol=2e-3)
    # one step of the chain is exactly q(x_1 | x_0)
    z = torch.randn(5, 3)
    assert torch.allclose(sched.q_sample(x0[:5].float(), torch.ones(5, dtype=torch.long), z),
                          math.sqrt(1 - 1e-4) * x0[:5].float() + math.sqrt(1e-4) * z, atol=1e-7)


def test_min_snr_weights_each_image_by_its_clamped_snr():
    from dlnotes.engine.config import ConfigError
    from dlnotes.generative.diffusion import DDPMConfig
    sched = DDPMSchedule(T=1000)
    t = torch.tensor([1, 100, 200, 1000])
    ab = sched.abar[t]
    torch.testing.assert_close(sched.snr(t), (ab / (1 - ab)).float())
    x0 = torch.randn(64, 1, 4, 4)
    seen = {}

    def model(x, t):  # a fixed, imperfect predictor: errors differ from image to image
        seen["t"] = t
        return 0.5 * x + 0.01 * t.float().view(-1, 1, 1, 1)

    def draw(gamma):
        return sched.loss(model, x0, torch.Generator().manual_seed(7), snr_gamma=gamma)
    plain = draw(0.0)
    assert torch.allclose(draw(1e9), plain)  # a clamp above every SNR weighs all steps 1
    weighted, t_used = draw(5.0), seen["t"]
    # by hand: the same t and eps, per-image squared error times min(SNR, 5) / SNR
    g = torch.Generator().manual_seed(7)
    tt = torch.randint(1, 1001, (64,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    err = (model(sched.q_sample(x0, tt, eps), tt) - eps).pow(2).flatten(1).mean(1)
    snr = sched.snr(tt)
    assert torch.equal(t_used, tt)
    torch.testing.assert_close(weighted, (err * torch.clamp(snr, max=5.0) / snr).mean())
    assert float(weighted) < float(plain)  # the nearly clean steps count less
    torch.testing.assert_close(plain, err.mean())
    assert float(sched.snr(torch.tensor([1]))) > 5e3 and float(sched.snr(torch.tensor([1000]))) < 1e-3
    with pytest.raises(ConfigError, match="snr_gamma"):
        DDPMConfig(snr_gamma=-1).check()


def test_lr_decay_holds_then_falls_along_half_a_cosine_and_resumes_like_a_fresh_run():
    from dlnotes.engine.config import ConfigError
    from dlnotes.generative.diffusion import DDPMConfig, lr_at
    lr, total = 1e-3, 2000
    assert lr_at(0, total, lr, 0.25) == pytest.approx(lr / 500) and lr_at(499, total, lr, 0.25) == pytest.approx(lr)
    assert all(lr_at(s, total, lr, 0.0) == lr for s in (500, 1499, 1500, 1999))  # 0: constant after the warm-up
    assert lr_at(1499, total, lr, 0.25) == lr and lr_at(1500, total, lr, 0.25) == pytest.approx(lr)
    assert lr_at(1750, total, lr, 0.25) == pytest.approx(lr / 2)  # half way down the last quarter
    assert lr_at(1999, total, lr, 0.25) < 1e-4 * lr
    rates = [lr_at(s, total, lr, 0.25) for s in range(1500, 2000)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    # 16 epochs decaying over the last quarter train their first 12 exactly as a 12-epoch constant run
    assert all(lr_at(s, 7488, lr, 0.25) == lr_at(s, 5616, lr, 0.0) for s in range(0, 5616, 7))
    with pytest.raises(ConfigError, match="lr_decay"):
        DDPMConfig(lr_decay=1.5).check()


def test_sampling_model_compiles_only_under_compile_and_predicts_the_same_noise(tmp_path):
    from dlnotes.engine import Run
    from dlnotes.generative.diffusion import sampling_model
    torch.manual_seed(0)
    model = _perturb(UNet(1, 8, (1, 2), 1, (1,)).eval(), 0.05)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 100, 999])
    with torch.no_grad():
        want = model(x, t)
        assert sampling_model(model, Run(tmp_path / "a", device="cpu", quiet=True)) is model
        net = sampling_model(model, Run(tmp_path / "b", device="cpu", compile=True, quiet=True))
        assert net is not model and hasattr(net, "_orig_mod")
        torch.testing.assert_close(net(x, t), want, atol=1e-4, rtol=1e-4)


def test_sampling_eps_fn_is_fp32_unless_asked_and_then_runs_under_the_runs_autocast(tmp_path):
    from dlnotes.engine import Run
    from dlnotes.engine.dist import bf16_supported
    from dlnotes.generative.diffusion import sampling_eps_fn
    torch.manual_seed(0)
    model = _perturb(UNet(1, 8, (1, 2), 1, (1,)).eval(), 0.05)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 100, 999])
    run = Run(tmp_path / "a", device="cpu", amp="bf16", quiet=True)
    with torch.no_grad():
        want = model(x, t)
        assert torch.equal(sampling_eps_fn(model, run)(x, t), want)  # sample_amp off: fp32 even under --amp bf16
        got = sampling_eps_fn(model, run, amp=True)(x, t)
        plain = sampling_eps_fn(model, Run(tmp_path / "b", device="cpu", quiet=True), amp=True)(x, t)
    assert torch.equal(plain, want)  # no --amp: nothing to autocast to
    assert got.dtype == torch.float32  # the samplers' arithmetic stays fp32
    torch.testing.assert_close(got, want, atol=0.05 * float(want.abs().max()), rtol=0.05)
    if bf16_supported(torch.device("cpu")):
        assert not torch.equal(got, want)  # the network ran in bf16


def _gaussian_eps(sched, mu, s):
    """The optimal noise predictor E[eps | x_t] when x_0 ~ N(mu, s^2) (1-D)."""
    def eps(x, t):
        ab = sched.abar[t].to(x.dtype).view(-1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * s ** 2 + 1 - ab)
    return eps


def test_ddim_eta1_full_steps_is_ddpm_sampler():
    sched = DDPMSchedule(T=1000)
    mu, s = 0.7, 0.3
    eps = _gaussian_eps(sched, mu, s)
    n = 2000
    g = torch.Generator().manual_seed(0)
    noises = [torch.randn(n, 1, generator=g) for _ in range(sched.T + 1)]
    a = sched.ddpm_sample(eps, (n, 1), variance="beta_tilde", noises=noises)
    b = sched.ddim_sample(eps, (n, 1), steps=sched.T, eta=1.0, noises=noises)
    assert torch.allclose(a, b, atol=1e-4)  # the same update, pathwise
    # in distribution, with independent noise: both give N(mu, s^2), and agree with each other
    ddim = sched.ddim_sample(eps, (20000, 1), steps=sched.T, eta=1.0, generator=torch.Generator().manual_seed(1))
    ddpm = sched.ddpm_sample(eps, (20000, 1), variance="beta_tilde", generator=torch.Generator().manual_seed(2))
    for x in (ddim, ddpm):
        assert abs(float(x.mean()) - mu) < 0.01 and abs(float(x.std()) - s) < 0.01
    from scipy.stats import ks_2samp
    assert ks_2samp(ddim.flatten().numpy(), ddpm.flatten().numpy()).pvalue > 0.001
    # deterministic DDIM (eta = 0) is a different sampler of the same law
    det = sched.ddim_sample(eps, (20000, 1), steps=sched.T, eta=0.0, generator=torch.Generator().manual_seed(3))
    assert abs(float(det.mean()) - mu) < 0.01 and abs(float(det.std()) - s) < 0.01


def test_eps_scale_divides_the_predicted_noise_and_sets_the_spread():
    sched = DDPMSchedule(T=1000)
    mu, s = 0.7, 0.3
    eps = _gaussian_eps(sched, mu, s)
    g = torch.Generator().manual_seed(0)
    noises = [torch.randn(500, 1, generator=g) for _ in range(sched.T + 1)]
    for lam in (0.95, 1.02):
        scaled = lambda x, t, lam=lam: eps(x, t) / lam  # noqa: E731
        for run in (lambda f, **kw: sched.ddpm_sample(f, (500, 1), clip=True, noises=noises, **kw),
                    lambda f, **kw: sched.ddim_sample(f, (500, 1), steps=50, eta=0.5, noises=noises, **kw)):
            a, b = run(eps, eps_scale=lam), run(scaled)
            assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, run(eps), atol=1e-3)
    # with the exact noise, 50 deterministic steps narrow N(0.7, 0.3^2) to std 0.272; lambda > 1 (Ning et al.'s
    # direction) widens it back (0.311 at 1.02), lambda < 1 narrows it further (0.190 at 0.95): a lower temperature
    std = {lam: float(sched.ddim_sample(eps, (20000, 1), steps=50, generator=torch.Generator().manual_seed(4),
                                        eps_scale=lam).std()) for lam in (0.95, 1.0, 1.02)}
    assert std[0.95] < 0.2 < 0.26 < std[1.0] < 0.28 < 0.3 < std[1.02] < 0.32


def test_ddim_timestep_spacings():
    sched = DDPMSchedule(T=1000)
    uni, quad = sched.ddim_timesteps(50), sched.ddim_timesteps(50, "quadratic")
    assert uni == list(range(1000, -1, -20))
    for ts in (uni, quad, sched.ddim_timesteps(1000, "quadratic"), sched.ddim_timesteps(7, "quadratic")):
        assert ts[0] == 1000 and ts[-1] == 0 and all(a > b for a, b in zip(ts, ts[1:]))  # distinct steps
    assert len(quad) == 51 and quad[-2] < 5 and quad[1] < 980  # denser near the data, coarser near noise
    with pytest.raises(ValueError, match="spacing"):
        sched.ddim_timesteps(50, "cubic")
    with pytest.raises(ValueError, match="steps"):
        sched.ddim_timesteps(0)
    # on a narrow Gaussian (exact eps), 50 deterministic steps shrink the spread; steps dense near the data
    # shrink it less (std 0.287 against 0.272 for uniform steps; the law's is 0.3)
    mu, s = 0.7, 0.3
    x = {sp: sched.ddim_sample(_gaussian_eps(sched, mu, s), (20000, 1), steps=50, spacing=sp,
                               generator=torch.Generator().manual_seed(4)) for sp in ("uniform", "quadratic")}
    for v in x.values():
        assert abs(float(v.mean()) - mu) < 0.01 and abs(float(v.std()) - s) < 0.04
    assert abs(float(x["quadratic"].std()) - s) < 0.5 * abs(float(x["uniform"].std()) - s)


def test_unet_shapes_time_embedding_and_cross_attention():
    e = timestep_embedding(torch.tensor([0, 5]), 8)
    assert e.shape == (2, 8) and torch.allclose(e[0], torch.tensor([0.0, 1] * 4))
    assert torch.allclose(e[1, :2], torch.tensor([math.sin(5.0), math.cos(5.0)]))
    torch.manual_seed(0)
    for shape in ((2, 1, 28, 28), (2, 4, 7, 7), (2, 1, 8, 8)):
        net = _perturb(UNet(shape[1], base=8, mults=(1, 2, 2) if shape[-1] == 28 else (1, 2), attn_levels=(1, 2),
                            context_dim=6), 0.05)
        x = torch.randn(shape)
        ctx, mask = torch.randn(2, 3, 6), torch.tensor([[True, True, False], [True, False, False]])
        out = net(x, torch.tensor([1, 500]), ctx, mask)
        assert out.shape == x.shape
        assert not torch.allclose(out, net(x, torch.tensor([1, 500]), torch.randn(2, 3, 6), mask))  # uses text
        ctx2 = ctx.clone()
        ctx2[0, 2] += 5.0  # a padded token must not matter
        assert torch.allclose(out[0], net(x, torch.tensor([1, 500]), ctx2, mask)[0], atol=1e-5)


def test_spatial_latent_keeps_the_layout_and_decode_undoes_the_standardisation():
    from dlnotes.generative import latent_diffusion as LD
    ae = LD.SpatialAutoencoder(4, 8).eval()
    x = torch.zeros(2, 1, 28, 28)
    x[1, :, :4, :4] = 1.0  # a blob in the top-left 4x4 patch only
    z = ae.encoder(x)
    assert z.shape == (2, 4, 7, 7)
    # the encoder is convolutional: positions beyond the blob's receptive field see only the blank image
    far = (z[0] - z[1]).abs().amax(0)  # (7, 7)
    assert far[3:, 3:].max() == 0 and far[0, 0] > 0
    codes = LD.encode(ae, x)  # (N, 196) flattened
    mean, std = codes.mean(0), codes.std(0) + 1e-6
    zs = ((codes - mean) / std).view(2, 4, 7, 7)
    torch.testing.assert_close(LD.decode(ae, zs, mean, std), ae(x), atol=1e-5, rtol=1e-5)


def test_code_stats_standardise_each_dimension_or_all_with_one_scale():
    from dlnotes.generative.latent_diffusion import code_stats
    codes = torch.randn(500, 6) * torch.tensor([0.01, 0.5, 1.0, 2.0, 3.0, 0.1]) + torch.arange(6.0)
    mean, std = code_stats(codes, "dim")
    torch.testing.assert_close(((codes - mean) / std).std(0), torch.ones(6), atol=1e-3, rtol=0)
    mean_g, std_g = code_stats(codes, "global")
    torch.testing.assert_close(mean_g, codes.mean(0))
    z = (codes - mean_g) / std_g
    assert std_g.shape == (6,) and torch.all(std_g == std_g[0])  # one scale for every dimension
    torch.testing.assert_close(z.pow(2).mean(), torch.tensor(1.0), atol=3e-3, rtol=0)  # unit scale on average
    assert z[:, 0].std() < 0.01  # a near-constant dimension stays near constant


def test_latent_config_refuses_shapes_its_autoencoder_cannot_make():
    from dlnotes.engine.config import ConfigError
    from dlnotes.generative.latent_diffusion import LatentDiffusionConfig
    with pytest.raises(ConfigError, match="latent_shape"):
        LatentDiffusionConfig(latent_shape=[4, 4, 4]).check()  # spatial codes are C x 7 x 7
    with pytest.raises(ConfigError, match="latent_dim"):
        LatentDiffusionConfig(latent="dense", latent_shape=[4, 7, 7]).check()  # 196 != 64
    LatentDiffusionConfig(latent="dense", latent_shape=[4, 4, 4]).check()
    from dlnotes.engine.config import set_key
    with pytest.raises(ConfigError, match="code_scale"):
        set_key(LatentDiffusionConfig(), "code_scale", "pixel")  # what --set code_scale=pixel does


def test_latent_full_preset_trains_like_pixel_ddpm_for_4x_the_epochs():
    from dlnotes.engine.recipes import get
    pixel, latent = get("ddpm-mnist").make_config(), get("latent-diffusion-mnist").make_config()
    assert latent.epochs == 4 * pixel.epochs  # a latent step costs a fifth to a sixth of a pixel one
    for key in ("lr", "lr_decay", "snr_gamma", "dropout", "batch_size", "ema", "T", "beta_1", "beta_T"):
        assert getattr(latent, key) == getattr(pixel, key), key


def test_latent_speedup_times_the_pixel_unet_placed_and_autocast_like_the_latent_one():
    import contextlib

    from dlnotes.generative import latent_diffusion as LD
    placed, entered = [], []

    class FakeRun:  # records what the timing asks of the run
        device = torch.device("cpu")

        def place(self, m):
            placed.append(m)
            return m

        def autocast(self):
            entered.append(1)
            return contextlib.nullcontext()

    cfg = LD.LatentDiffusionConfig(batch_size=2, T=10, dropout=0.05)
    assert LD.time_pixel_steps(cfg, 2, FakeRun()) > 0
    assert len(placed) == 1 and len(entered) == 3  # one warm-up step and two timed, each under autocast
    rates = {m.p for m in placed[0].modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.05}  # the recipe's dropout, not the pixel recipe's default 0.1
