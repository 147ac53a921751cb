"""The regularizers' terms against hand-computed values."""
import copy

import pytest
import torch
from torch import nn

from harness.interfaces import DStepContext, GStepContext
from harness.registry import AUGMENTS, REGULARIZERS


class MeanD(nn.Module):
    """Mean pixel value: invariant to flips (and any permutation of pixels)."""

    def forward(self, x):
        return x.flatten(1).mean(1)


class LinearD(nn.Module):
    def __init__(self, shape=(3, 8, 8), seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(*shape, generator=g))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def val(t):
    return float(t.detach())


def images(n=8, seed=0):
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def d_ctx(D, real, fake, iteration=0, G=None, z=None):
    none = AUGMENTS.build("none")
    return DStepContext(D, none, real, fake, real, fake, D(real), D(fake), iteration, G=G, z=z)


def build(name, weight=1.0, iterations=100, **kwargs):
    return REGULARIZERS.build(name, kwargs, weight=weight, iterations=iterations)


def test_cr_is_zero_for_an_augmentation_invariant_d():
    torch.manual_seed(0)
    cr = build("cr", transform="flip")
    assert val(cr.d_term(d_ctx(MeanD(), images(), images(seed=1)))) == pytest.approx(0.0, abs=1e-12)
    term = cr.d_term(d_ctx(LinearD(), images(), images(seed=1)))
    assert float(term.detach()) > 0
    term.backward()  # both D outputs carry gradient


def test_cr_matches_its_definition():
    D, x = LinearD(), images()
    torch.manual_seed(5)
    cr = build("cr", transform="flip,translation")
    got = cr.d_term(d_ctx(D, x, images(seed=1)))
    torch.manual_seed(5)
    expected = ((D(cr.transform(x)) - D(x)) ** 2).mean().detach()
    assert float(got.detach()) == pytest.approx(float(expected), rel=1e-6)


def test_bcr_adds_the_fake_side_with_its_weights():
    D, x, f = LinearD(), images(), images(seed=1)
    bcr = build("bcr", transform="flip", real_weight=2.0, fake_weight=0.5)
    torch.manual_seed(1)
    got = val(bcr.d_term(d_ctx(D, x, f)).detach())
    torch.manual_seed(1)
    t = bcr.transform
    expected = (2.0 * ((D(t(x)) - D(x)) ** 2).mean() + 0.5 * ((D(t(f)) - D(f)) ** 2).mean()).detach()
    assert got == pytest.approx(float(expected), rel=1e-6)
    assert val(bcr.d_term(d_ctx(MeanD(), x, f))) == pytest.approx(0.0, abs=1e-12)


class ConstantG(nn.Module):
    z_dim = 4

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(3, 8, 8))

    def forward(self, z):
        return self.b.expand(z.shape[0], -1, -1, -1) + 0 * z.sum(1).view(-1, 1, 1, 1)


class LinearG(nn.Module):
    z_dim = 4

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3 * 8 * 8)

    def forward(self, z):
        return self.lin(z).view(-1, 3, 8, 8)


def test_zcr_vanishes_for_a_g_that_ignores_z_and_pushes_g_apart_otherwise():
    zcr = build("zcr", weight=5.0, sigma=0.1, gen_weight=0.5)
    assert zcr.weight == 5.0 and zcr.g_weight == 0.5
    z = torch.randn(8, 4)
    for G, zero in ((ConstantG(), True), (LinearG(), False)):
        fake = G(z)
        D = LinearD()
        d = zcr.d_term(d_ctx(D, images(), fake.detach(), G=G, z=z)).detach()
        g = zcr.g_term(GStepContext(D, AUGMENTS.build("none"), fake, fake, D(fake), 0, G=G, z=z)).detach()
        if zero:
            assert float(d) == 0.0 and float(g) == 0.0
        else:
            assert float(d) > 0 and float(g) < 0


def test_r1_is_half_the_squared_input_gradient_and_lazy():
    D, x = LinearD(), images()
    expected = 0.5 * val(D.w.pow(2).sum())  # grad of w.x is w for every image
    assert val(build("r1").d_term(d_ctx(D, x, images(seed=1)))) == pytest.approx(expected, rel=1e-5)
    lazy = build("r1", interval=4)
    assert lazy.d_term(d_ctx(D, x, x, iteration=3)) is None
    assert val(lazy.d_term(d_ctx(D, x, x, iteration=8))) == pytest.approx(4 * expected, rel=1e-5)


def test_gp_penalises_the_gradient_norm_around_its_centre():
    D = LinearD()
    with torch.no_grad():
        D.w.mul_(3.0 / D.w.norm())
    x, f = images(), images(seed=1)
    assert val(build("gp").d_term(d_ctx(D, x, f))) == pytest.approx(4.0, rel=1e-5)  # (3 - 1)^2
    assert val(build("gp", center=0.0).d_term(d_ctx(D, x, f))) == pytest.approx(9.0, rel=1e-5)


def test_lecam_term_and_anchor_updates():
    lecam = build("lecam", decay=0.9)
    D = LinearD()
    x, f = images(), images(seed=1)
    ctx = d_ctx(D, x, f)
    term = lecam.d_term(ctx)  # anchors start at 0
    r, fk = ctx.real_logits.detach(), ctx.fake_logits.detach()
    expected = torch.relu(r).pow(2).mean() + torch.relu(-fk).pow(2).mean()
    assert val(term) == pytest.approx(val(expected), rel=1e-6)
    assert float(lecam.anchor_real) == pytest.approx(0.1 * float(r.mean()), rel=1e-6)
    assert float(lecam.anchor_fake) == pytest.approx(0.1 * float(fk.mean()), rel=1e-6)
    a_r, a_f = float(lecam.anchor_real), float(lecam.anchor_fake)
    term = lecam.d_term(ctx)
    expected = torch.relu(r - a_f).pow(2).mean() + torch.relu(a_r - fk).pow(2).mean()
    assert val(term) == pytest.approx(val(expected), rel=1e-5)
    assert lecam.stats() == {"lecam_real": float(lecam.anchor_real), "lecam_fake": float(lecam.anchor_fake)}
    restored = build("lecam", decay=0.9)
    restored.load_state_dict(copy.deepcopy(lecam.state_dict()))
    assert restored.stats() == lecam.stats()
    late = build("lecam", start=10)
    assert late.d_term(ctx) is None and val(late.anchor_real) != 0.0  # anchors move before start


def test_instance_noise_anneals_linearly_to_zero():
    noise = build("instance_noise", iterations=100, sigma=0.2)
    assert noise.sigma_at(0) == pytest.approx(0.2)
    assert noise.sigma_at(50) == pytest.approx(0.1)
    assert noise.sigma_at(100) == 0.0
    x = torch.zeros(64, 3, 16, 16)
    torch.manual_seed(0)
    assert float(noise.perturb(x, 50).std()) == pytest.approx(0.1, rel=0.05)
    assert noise.stats() == {"instance_noise_sigma": pytest.approx(0.1)}
    assert noise.perturb(x, 100) is x
    fixed_span = build("instance_noise", iterations=100, sigma=0.2, anneal_iterations=10)
    assert fixed_span.sigma_at(5) == pytest.approx(0.1) and fixed_span.sigma_at(20) == 0.0
