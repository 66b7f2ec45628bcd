"""Tier 1: the losses, penalties and bounds of Lecture 11 against references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlnotes.generative.autoencoder import (LinearAutoencoder, compare_with_pca, linear_ae_loss_from_covariance,
                                           principal_angles_deg, reconstruction_loss, train_linear_ae)
from dlnotes.generative.gan import (MLPDiscriminator, MLPGenerator, discriminator_loss, generator_loss, r1_penalty,
                                    r1_weight, make_discriminator, make_generator)
from dlnotes.generative.mode_collapse import coordinate_std, mode_metrics, sample_mixture
from dlnotes.generative.vae import VAE, iwae_nll, kl_normal_std, log_normal, vae_loss
from dlnotes.generative.wgan import clip_weights, critic_loss, gradient_penalty
from dlnotes.nn.convnets import ConvDecoder, ConvEncoder, ImageTranslator
from tests.conftest import needs_data


def test_discriminator_loss_is_bce_with_the_notes_labels():
    torch.manual_seed(0)
    real, fake = torch.randn(17), torch.randn(23)
    ref = (F.binary_cross_entropy(torch.sigmoid(real), torch.ones(17))  # y = 1 for real
           + F.binary_cross_entropy(torch.sigmoid(fake), torch.zeros(23)))  # y = 0 for fake
    assert torch.allclose(discriminator_loss(real, fake), ref, atol=1e-6)
    # -E log D(x) - E log(1 - D(G(z))) written out
    d_r, d_f = torch.sigmoid(real), torch.sigmoid(fake)
    assert torch.allclose(discriminator_loss(real, fake), -d_r.log().mean() - (1 - d_f).log().mean(), atol=1e-6)


def test_generator_losses_and_saturation():
    fake = torch.tensor([-6.0, -1.0, 0.5])
    d = torch.sigmoid(fake)
    assert torch.allclose(generator_loss(fake, "saturating"), (1 - d).log().mean(), atol=1e-6)
    assert torch.allclose(generator_loss(fake, "nonsaturating"), -d.log().mean(), atol=1e-6)
    # at D(G(z)) ~ 0 the saturating loss is flat in the logit, the non-saturating one is not
    x = torch.tensor([-8.0], requires_grad=True)
    (gs,) = torch.autograd.grad(generator_loss(x, "saturating"), x)
    (gn,) = torch.autograd.grad(generator_loss(x, "nonsaturating"), x)
    assert abs(gs.item()) < 1e-3 and abs(gn.item()) > 0.99
    with pytest.raises(ValueError):
        generator_loss(fake, "minimax")


def test_gradient_penalty_zero_for_unit_norm_linear_critic():
    torch.manual_seed(0)
    critic = torch.nn.Linear(6, 1)
    with torch.no_grad():
        critic.weight /= critic.weight.norm()  # ||w|| = 1: gradient norm 1 everywhere
    lin = lambda x: critic(x).squeeze(1)  # noqa: E731
    real, fake = torch.randn(32, 6), torch.randn(32, 6)
    assert gradient_penalty(lin, real, fake).item() < 1e-10
    with torch.no_grad():
        critic.weight *= 3.0  # ||w|| = 3: penalty (3 - 1)^2 = 4
    assert abs(gradient_penalty(lin, real, fake).item() - 4.0) < 1e-4
    # image-shaped input, per-sample gradient norms
    conv_lin = lambda x: x.flatten(1) @ torch.full((4,), 0.5)  # noqa: E731  ||w|| = 1
    assert gradient_penalty(conv_lin, torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)).item() < 1e-10


def test_r1_penalty_is_the_mean_squared_input_gradient_and_trains_d():
    torch.manual_seed(0)
    D = torch.nn.Linear(6, 1)
    x = torch.randn(16, 6, requires_grad=True)
    pen = r1_penalty(D(x).squeeze(1), x)  # the logit's gradient is w at every x: ||w||^2
    assert abs(pen.item() - D.weight.pow(2).sum().item()) < 1e-5
    (g,) = torch.autograd.grad(pen, D.weight)  # differentiable in D's weights: d||w||^2/dw = 2w
    assert torch.allclose(g, 2 * D.weight)
    # a quadratic logit 0.5 ||x||^2 on image-shaped input: gradient x, penalty E ||x||^2 per sample
    imgs = torch.randn(5, 1, 3, 3, requires_grad=True)
    pen = r1_penalty(0.5 * imgs.flatten(1).pow(2).sum(1), imgs)
    assert abs(pen.item() - imgs.detach().flatten(1).pow(2).sum(1).mean().item()) < 1e-5


def test_lazy_r1_keeps_the_mean_weight_on_one_step_in_k():
    from dlnotes.generative.gan import GANConfig

    every = [r1_weight(GANConfig(r1=2.0), s) for s in range(32)]
    lazy = [r1_weight(GANConfig(r1=2.0, r1_every=16), s) for s in range(32)]
    assert every == [1.0] * 32  # gamma / 2 on every step
    assert lazy[0] == lazy[16] == 16.0 and sum(w > 0 for w in lazy) == 2  # k gamma / 2 on steps 0, k
    assert sum(lazy) == sum(every)
    assert all(r1_weight(GANConfig(r1=0.0, r1_every=4), s) == 0.0 for s in range(8))


def test_critic_loss_and_clipping():
    assert critic_loss(torch.tensor([2.0, 4.0]), torch.tensor([1.0])).item() == pytest.approx(-2.0)
    net = torch.nn.Linear(5, 3)
    with torch.no_grad():
        net.weight.mul_(100)
    clip_weights(net, 0.01)
    assert all(p.abs().max().item() <= 0.01 + 1e-9 for p in net.parameters())


def test_network_shapes():
    z = torch.randn(3, 16)
    assert ConvDecoder(16, (16, 8))(z).shape == (3, 1, 28, 28)
    assert ConvEncoder(5, (8, 16))(torch.randn(3, 1, 28, 28)).shape == (3, 5)
    assert ConvEncoder(1, (8, 16), extra_in=10)(torch.randn(3, 1, 28, 28), torch.eye(10)[:3]).shape == (3, 1)
    assert ImageTranslator(4, 1)(torch.randn(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    assert ImageTranslator(4, 1, downs=2)(torch.randn(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="downs"):
        ImageTranslator(4, 1, downs=3)
    for arch in ("dcgan", "mlp"):
        g = make_generator(arch, 8, 8, extra_in=10)
        x = g(torch.randn(4, 18))
        assert x.shape == (4, 1, 28, 28) and x.abs().max() <= 1
        assert make_discriminator(arch, 8, extra_in=10)(x, torch.eye(10)[:4]).shape == (4,)
    assert MLPGenerator(4, (2,), hidden=(8,), out_act="none")(torch.randn(3, 4)).shape == (3, 2)
    assert MLPDiscriminator(2, hidden=(8,))(torch.randn(3, 2)).shape == (3,)
    # InfoGAN's fully connected layer between the vector and the 7x7 map, both ways
    assert make_generator("dcgan", 8, 8, hidden=32)(torch.randn(4, 8)).shape == (4, 1, 28, 28)
    assert make_discriminator("dcgan", 8, hidden=32)(torch.randn(4, 1, 28, 28)).shape == (4,)
    assert ConvEncoder(5, (8, 16), hidden=32).out.in_features == 32
    with pytest.raises(ValueError, match="fc_hidden"):
        make_generator("dcgan", 8, 8, hidden=-1)


def test_spectral_norm_discriminator_has_unit_largest_singular_values():
    torch.manual_seed(0)
    D = make_discriminator("dcgan", 8, norm="spectral")
    x = torch.randn(16, 1, 28, 28)
    for _ in range(30):  # power iteration advances one step per training-mode forward pass
        D(x)
    mats = [m.weight.flatten(1) for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(mats) == 3  # two convolutions and the output layer, no normalisation layers
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    for w in mats:
        assert abs(float(torch.linalg.matrix_norm(w.detach(), ord=2)) - 1.0) < 0.02


def test_image_pool_returns_current_or_stored_fakes():
    from dlnotes.generative.cyclegan import ImagePool

    x = torch.randn(4, 1, 2, 2, requires_grad=True)
    out = ImagePool(0).query(x)  # no pool: the batch itself, cut from the generator's graph
    assert torch.equal(out, x) and not out.requires_grad
    pool = ImagePool(6, seed=0)
    first, second = torch.arange(4.).view(4, 1, 1, 1), torch.arange(4., 8.).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned as they come
    out = pool.query(second)  # two slots left, then swaps with probability 1/2
    assert torch.equal(out[:2], second[:2]) and len(pool.images) == 6
    seen = set(range(8))
    third = torch.arange(8., 72.).view(64, 1, 1, 1)
    out = pool.query(third)
    assert {int(v) for v in out.flatten()} <= seen | set(range(8, 72))
    swapped = (out.flatten() != third.flatten()).float().mean()
    assert 0.25 < float(swapped) < 0.75  # about half the batch comes from the history
    assert len(pool.images) == 6  # the pool never grows past its size
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(-1)


@needs_data("mnist")
def test_translations_into_b_are_projected_onto_upsampled_8x8_scans():
    from dlnotes.generative.cyclegan import OntoDigitsGrid
    from dlnotes.data.images import by_name
    from dlnotes.generative.gan import to_signed

    for digits, box in (("digits20", 20), ("digits", 28)):
        onto = OntoDigitsGrid(torch.nn.Identity(), digits)
        xb, _ = by_name(digits, "test")
        b = to_signed(xb[:32])
        assert (onto(b) - b).abs().max() < 2.5 / 127.5  # a real B image passes (up to uint8 rounding)
        x = torch.rand(8, 1, 28, 28) * 2 - 1
        y = onto(x)
        assert torch.allclose(onto(y), y, atol=1e-5)  # a projection: applying it twice changes nothing
        pad = (28 - box) // 2
        if pad:
            frame = torch.ones(28, 28, dtype=torch.bool)
            frame[pad:pad + box, pad:pad + box] = False
            assert (y[..., frame] == -1).all()  # blank around the digit box, as in the data
        # orthogonal: the residual is perpendicular to every upsampled scan
        scans = F.interpolate(torch.randn(5, 1, 8, 8), size=(box, box), mode="bilinear", align_corners=False)
        resid = (x - y)[..., pad:pad + box, pad:pad + box].reshape(8, -1)
        assert (resid @ scans.reshape(5, -1).T).abs().max() < 1e-3
    with pytest.raises(ValueError, match="digits20 or digits"):
        OntoDigitsGrid(torch.nn.Identity(), "mnist")


def test_affine_warp_starts_at_identity_and_resamples_through_theta():
    from dlnotes.generative.cyclegan import AffineWarp

    warp = AffineWarp(torch.nn.Identity())
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    assert torch.allclose(warp(x), x, atol=1e-5)  # the identity map until trained
    with torch.no_grad():  # theta = a shift by one pixel (2/28 in normalised coordinates) along x
        warp.loc.out.bias.copy_(torch.tensor([1.0, 0.0, 2 / 28, 0.0, 1.0, 0.0]))
    y = warp(x)
    assert torch.allclose(y[..., :-1], x[..., 1:], atol=1e-5)  # output column j reads input column j + 1
    assert torch.allclose(y[..., -1], x[..., -1], atol=1e-5)  # the border fills what comes from outside
    y.sum().backward()
    assert warp.loc.out.weight.grad.abs().sum() > 0  # theta is learned through the resampling


def test_mode_metrics_on_real_and_collapsed_samples():
    g = torch.Generator().manual_seed(0)
    real = mode_metrics(sample_mixture("ring8", 4000, g), "ring8")
    assert real["modes_covered"] == 8 and real["high_quality_share"] > 0.99  # 3 std holds 98.9% in 2-D
    collapsed = mode_metrics(sample_mixture("ring8", 4000, g)[:, :1].repeat(1, 2) * 0 + torch.tensor([2.0, 0.0]),
                             "ring8")
    assert collapsed["modes_covered"] == 1 and collapsed["modes_any"] == 1
    grid = mode_metrics(sample_mixture("grid25", 10000, g), "grid25")
    assert grid["modes_covered"] == 25 and grid["n_modes"] == 25


def test_coordinate_std_is_the_mixtures_empirical_std():
    g = torch.Generator().manual_seed(0)
    for kind, expected in (("ring8", 2 / math.sqrt(2)), ("grid25", math.sqrt(8))):
        pts = sample_mixture(kind, 200000, g)
        assert abs(coordinate_std(kind) - expected) < 0.01  # the closed form, std 0.02 / 0.05 aside
        assert torch.allclose(pts.std(0), torch.full((2,), coordinate_std(kind)), rtol=0.01)


def test_linear_autoencoder_spans_the_pca_subspace():
    rng = np.random.default_rng(0)
    d, k, n = 12, 3, 400
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    scales = np.array([5.0, 3.0, 2.0] + [0.3] * (d - k))  # clear eigengap after k
    x = (rng.normal(size=(n, d)) * scales) @ basis.T + 1.5
    xt = torch.from_numpy(x).float()
    model = train_linear_ae(xt - xt.mean(0), k, steps=1500, lr=3e-2)
    res = compare_with_pca(x, model, k)
    assert res["max_principal_angle_deg"] < 1.0  # span(U) = top-3 principal subspace
    assert res["mse_ratio_to_pca"] < 1.01
    # the angle measure does fail for a wrong subspace (the next principal directions)
    U = model.U.weight.detach().double().numpy()
    assert principal_angles_deg(U, basis[:, k:2 * k]).min() > 80


def test_covariance_form_of_the_linear_ae_loss_matches_the_per_sample_loss():
    torch.manual_seed(0)
    x = torch.randn(300, 9, dtype=torch.float64) @ torch.randn(9, 9, dtype=torch.float64)
    x = x - x.mean(0)
    model = LinearAutoencoder(9, 3).double()
    grads = []
    for loss_fn in (lambda: reconstruction_loss(x, model(x)),
                    lambda: linear_ae_loss_from_covariance(model, x.T @ x / len(x))):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        grads.append((loss.detach(), model.U.weight.grad.clone(), model.V.weight.grad.clone()))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)
    assert grads[0][0] > 1.0  # a loss of this size, so the check is not comparing zeros


def test_vae_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3) * 0.5
    z = mu + (0.5 * logvar).exp() * torch.randn(200000, 4, 3)  # samples of q
    mc = (log_normal(z, mu, logvar) - log_normal(z, torch.zeros(3), torch.zeros(3))).mean(0)  # E_q log q/p
    assert torch.allclose(kl_normal_std(mu, logvar), mc, rtol=0.02, atol=0.01)
    assert kl_normal_std(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() == 0


def test_iwae_bound_is_tighter_than_the_elbo():
    torch.manual_seed(0)
    model = VAE(x_dim=20, hidden=16, latent=2)
    x = torch.bernoulli(torch.full((64, 20), 0.3))
    with torch.no_grad():
        elbo_nll = torch.stack([vae_loss(model, x)[0] for _ in range(200)]).mean().item()
    torch.manual_seed(1)
    k1 = iwae_nll(model, x, k=1).mean().item()
    k50 = iwae_nll(model, x, k=50).mean().item()
    assert k1 == pytest.approx(elbo_nll, rel=0.02)  # k = 1 is the ELBO
    assert k50 < elbo_nll - 0.05  # more samples: a tighter (smaller) NLL bound
    # for a 1-pixel, 1-latent model the bound with many samples reaches log p(x) computed by quadrature
    m = VAE(x_dim=1, hidden=4, latent=1)
    x1 = torch.ones(1, 1)
    zs = torch.linspace(-8, 8, 4001)[:, None]
    with torch.no_grad():
        logp = torch.logsumexp(-F.binary_cross_entropy_with_logits(m.decode(zs), x1.expand(4001, 1), reduction="none")[:, 0]
                               + log_normal(zs, torch.zeros(1), torch.zeros(1)), 0) + math.log(16 / 4000)
    torch.manual_seed(0)
    assert iwae_nll(m, x1, k=20000).item() == pytest.approx(-logp.item(), abs=0.03)


def test_ema_is_the_stated_moving_average_of_weights_and_running_statistics():
    import torch
    from torch import nn

    from dlnotes.nn.ema import EMA

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(net, 0.9)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net(torch.randn(8, 3))  # moves the BatchNorm running statistics and its counter
    ema.update(net)
    now = net.state_dict()
    for k, v in ema.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, 0.9 * before[k] + 0.1 * now[k])
        else:
            assert torch.equal(v, now[k])
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training
    with pytest.raises(ValueError, match="decay"):
        EMA(net, 1.0)


def test_standing_statistics_are_the_mean_of_the_batch_statistics_and_restore_momentum():
    import torch
    from torch import nn

    from dlnotes.nn.ema import EMA, standing_batchnorm_stats

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(net, 0.9)
    with torch.no_grad():
        net[0].weight.mul_(5.0).add_(2.0)  # the averaged running statistics no longer fit
    ema.update(net)
    x = torch.randn(4096, 3) * 2 + 1
    with torch.no_grad():
        stale = ema.model(x)  # eval mode with the averaged statistics: far from normalised
    assert (stale.std(0) - 1).abs().max() > 0.5
    batches = [torch.randn(64, 3) * 2 + 1 for _ in range(4)]
    model = standing_batchnorm_stats(ema.model, lambda i: batches[i], batches=4)
    h = [model[0](b) for b in batches]
    bn = model[1]
    assert torch.allclose(bn.running_mean, torch.stack([x.mean(0) for x in h]).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack([x.var(0) for x in h]).mean(0), atol=1e-4)
    assert bn.momentum == 0.1 and not model.training
    # eval-mode outputs now match train-mode normalisation of a typical batch, near zero mean and unit scale
    with torch.no_grad():
        out = model(x)
    assert out.mean(0).abs().max() < 0.25 and (out.std(0) - 1).abs().max() < 0.25
    with pytest.raises(ValueError, match="batch"):
        standing_batchnorm_stats(model, lambda i: batches[0], batches=0)


def test_bias_corrected_ema_is_the_decay_weighted_mean_of_the_updates_only():
    import torch
    from torch import nn

    from dlnotes.nn.ema import EMA

    net = nn.Linear(2, 1, bias=False)
    ema, d = EMA(net, 0.9), 0.9
    seen = []
    for t in range(1, 6):
        with torch.no_grad():
            net.weight.fill_(float(t * t))
        seen.append(net.weight.clone())
        ema.update(net, t=t)
    w = torch.tensor([d ** (5 - t) for t in range(1, 6)])  # the initial weights get no share
    expect = sum(wi * x for wi, x in zip(w, seen)) / w.sum()
    assert torch.allclose(ema.model.weight, expect)
    assert ema.decay_at(1) == 0.0 and abs(ema.decay_at(10_000) - 0.9) < 1e-12 and ema.decay_at(None) == 0.9


def test_discriminator_learning_rate_reaches_its_optimiser(tmp_path):
    from dlnotes.engine import Run
    from dlnotes.generative.gan import GANConfig, adversarial_setup

    for lr_d, want in ((4e-4, 4e-4), (0.0, 3e-4)):  # 0: D shares G's rate
        run = Run(tmp_path / f"r{lr_d}", quiet=True, device="cpu")
        cfg = GANConfig(width=4, lr=3e-4, lr_d=lr_d)
        _, _, _, _, opt_g, opt_d, *_ = adversarial_setup(cfg, run, n_train=100)
        assert opt_g.param_groups[0]["lr"] == 3e-4 and opt_d.param_groups[0]["lr"] == want
