"""SimCLR: NT-Xent against a hand-written cross-entropy; augmentations; learning on 8x8 digits."""
import math

import torch

from dlnotes.selfsup import augment as A
from dlnotes.selfsup.probe import features, knn_accuracy, label_subset, linear_probe, load_images, view_features
from dlnotes.selfsup.simclr import SimCLR, nt_xent, simclr_views
from dlnotes.nn.backbones import to_float


def _cos(u, v):
    return (u @ v / (u.norm() * v.norm())).item()


def test_nt_xent_equals_hand_written_cross_entropy():
    torch.manual_seed(0)
    b, tau = 3, 0.7
    z1, z2 = torch.randn(b, 4), torch.randn(b, 4)
    views = list(z1) + list(z2)
    total = 0.0
    for i in range(2 * b):
        partner = (i + b) % (2 * b)
        denom = sum(math.exp(_cos(views[i], views[n]) / tau) for n in range(2 * b) if n != i)
        total += -math.log(math.exp(_cos(views[i], views[partner]) / tau) / denom)
    assert abs(nt_xent(z1, z2, tau).item() - total / (2 * b)) < 1e-5


def test_nt_xent_partner_is_the_only_positive():
    torch.manual_seed(0)
    z1 = torch.randn(4, 8)
    # views equal to their partner and orthogonal-ish to the rest: low loss; swapping partners: high
    good = nt_xent(z1, z1 + 0.01 * torch.randn(4, 8), 0.1)
    bad = nt_xent(z1, z1.roll(1, 0), 0.1)
    assert good < 0.5 < bad
    # the loss ignores a view's similarity with itself (masked), so scaling z changes nothing
    assert torch.allclose(nt_xent(z1, z1.roll(1, 0), 0.1), nt_xent(3 * z1, 5 * z1.roll(1, 0), 0.1))


def test_augmentations_keep_shape_range_and_differ_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 28, 28).expand(16, 1, 28, 28).contiguous()
    for fn in (A.random_affine, A.random_resized_crop, A.gaussian_noise, lambda x, g: A.gaussian_blur(x, g, p=1.0)):
        y = fn(x, g)
        assert y.shape == x.shape and y.min() >= -1e-6 and y.max() <= 1 + 1e-6
        assert (y[0] - y[1]).abs().max() > 1e-3  # parameters are drawn per image
    v = simclr_views(x, g, flip=True)
    assert v.shape == x.shape
    # a full-area crop with ratio 1 is the identity; a flip is its own inverse
    same = A.random_resized_crop(x, g, area=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)
    assert torch.equal(A.random_hflip(A.random_hflip(x, torch.Generator().manual_seed(1), p=1.0),
                                      torch.Generator().manual_seed(2), p=1.0), x)


def test_augmentations_run_on_their_inputs_device():
    # parameters come from a CPU generator, the image work stays where the batch is (a GPU in a CUDA
    # run); the meta device carries no data, so any op that fell back to the CPU would raise here
    g = torch.Generator().manual_seed(0)
    x = torch.empty(4, 1, 28, 28, device="meta")
    for fn in (A.random_affine, A.random_resized_crop, A.random_hflip, A.gaussian_noise, A.gaussian_blur):
        assert fn(x, g).device.type == "meta"
    assert simclr_views(x, g, flip=True).device.type == "meta"


def test_fine_tuning_augments_batches_on_the_models_device():
    from dlnotes.nn.backbones import SmallResNet
    from dlnotes.selfsup.probe import train_classifier
    seen = []

    def augment(xb, g):
        seen.append(xb.device.type)
        return xb
    enc = SmallResNet(width=8, depth=1)
    x, y = torch.randint(0, 256, (20, 28, 28), dtype=torch.uint8), torch.arange(20) % 3
    model = train_classifier(enc, enc.out_dim, x, y, steps=2, batch=8, lr=1e-3, augment=augment, device="meta")
    assert seen == ["meta", "meta"] and next(model.parameters()).device.type == "meta"


def test_blur_keeps_a_constant_image_constant():
    x = torch.full((3, 1, 10, 10), 0.3)
    assert torch.allclose(A.gaussian_blur(x, torch.Generator().manual_seed(0), p=1.0), x, atol=1e-6)


def test_label_subset_is_balanced():
    y = torch.arange(10).repeat(100)
    idx = label_subset(y, 0.05)
    assert len(idx) == 50 and torch.bincount(y[idx]).eq(5).all()


def test_simclr_on_8x8_digits_gives_a_probe_well_above_chance():
    """~30 s of contrastive pretraining on the built-in digits: a linear probe with 10% of labels
    (15 per class) beats chance (10%) by more than 40 points, and a random encoder by 5."""
    torch.manual_seed(0)
    x_tr, y_tr, x_te, y_te = load_images("digits")
    model = SimCLR(width=16, proj_dim=32)
    random_enc = SimCLR(width=16, proj_dim=32).encoder
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(60):
        idx = torch.randint(0, len(x_tr), (128,), generator=g)
        x = to_float(x_tr[idx])
        z = model(torch.cat([simclr_views(x, g, False), simclr_views(x, g, False)]))
        loss = nt_xent(z[:128], z[128:], 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    idx = label_subset(y_tr, 0.1)
    f_tr, f_te = features(model.encoder, x_tr), features(model.encoder, x_te)
    acc = linear_probe(f_tr[idx], y_tr[idx], f_te, y_te)
    r_tr, r_te = features(random_enc, x_tr), features(random_enc, x_te)
    acc_random = linear_probe(r_tr[idx], y_tr[idx], r_te, y_te)
    assert acc > 0.5, (acc, acc_random)
    assert acc > acc_random + 0.05, (acc, acc_random)
    assert knn_accuracy(f_tr, y_tr, f_te, y_te, k=10) > 0.5


def test_probe_views_are_the_image_then_its_augmented_views():
    x_tr = load_images("digits")[0][:50]
    enc = SimCLR(width=16, proj_dim=32).encoder
    flip = lambda x, g: A.random_hflip(x, g, p=1.0)  # noqa: E731 (a fixed view, to check where it lands)
    v = view_features(enc, x_tr, flip, views=2, batch=16)
    assert v.shape == (50, 3, enc.out_dim)
    assert enc.training  # its mode is restored
    with torch.no_grad():
        enc.eval()  # batch-norm running statistics, as in the probe
        torch.testing.assert_close(v[:, 0], enc(to_float(x_tr)))  # view 0: the image itself
        torch.testing.assert_close(v[:, 1], enc(to_float(x_tr.flip(-1))))  # in each image's own row
    torch.testing.assert_close(features(enc, x_tr), v[:, 0])
    torch.testing.assert_close(v[:, 2], v[:, 1])


def test_probe_on_views_trains_on_all_of_them_and_cross_validates_whole_images(monkeypatch):
    import dlnotes.selfsup.probe as P
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    f = torch.randn(60, 8, generator=g) + torch.nn.functional.one_hot(y, 8).float()  # noisy: CV wants a penalty
    ft, yt = torch.randn(300, 8, generator=g) + torch.nn.functional.one_hot(torch.arange(300) % 3, 8).float(), \
        torch.arange(300) % 3
    plain = linear_probe(f, y, ft, yt)
    torch.testing.assert_close(linear_probe(f[:, None], y, ft, yt), plain, rtol=0, atol=0)
    fits, real_fit = [], P.fit_logreg

    def spy(a, yy, *args, **kw):
        fits.append((a, yy))
        return real_fit(a, yy, *args, **kw)
    monkeypatch.setattr(P, "fit_logreg", spy)
    # four copies of every image: the same mean loss, so the same fit, if no copy of a validation image trains
    assert abs(linear_probe(f[:, None].expand(60, 4, 8), y, ft, yt) - plain) < 0.01
    assert len(fits) == 5 * 5 + 1  # five penalties x five folds, then the refit on all images
    for a, yy in fits[:-1]:  # each fold trains on the 48 other images' four views, labels repeated per view
        assert a.shape == (48 * 4, 8) and torch.equal(yy.view(48, 4), yy.view(48, 4)[:, :1].expand(48, 4))
    assert fits[-1][0].shape == (240, 8)


def test_simclr_config_refuses_negative_probe_views():
    import pytest
    from dlnotes.engine.config import ConfigError
    from dlnotes.selfsup.simclr import SimCLRConfig
    with pytest.raises(ConfigError, match="probe_views: -1"):
        SimCLRConfig(probe_views=-1).check()
