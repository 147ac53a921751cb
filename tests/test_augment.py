"""The augmentation policies: their math, their gradients, their state."""
import copy

import pytest
import torch

from harness.registry import AUGMENTS
from harness.spec import parse_trial
from harness.steps import Models, Sampler, generator_step
from harness.trial import Trial
from variants.augment import ops
from tests.conftest import tiny_config

ONLY_GEOMETRIC = {k: False for k in ("brightness", "contrast", "hue", "saturation")}
ONLY_COLOUR = {k: False for k in ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")}


def images(n=16, c=3, r=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, r, r, generator=g) * 2 - 1


# ------------------------------------------------------------------- DiffAugment
def test_brightness_adds_one_offset_per_image_within_half():
    torch.manual_seed(0)
    x = images(64)
    d = ops.brightness(x) - x
    per_image = d.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    assert per_image.abs().max() <= 0.5
    assert per_image[:, 0].std() > 0.2  # spread over the range, not a constant


def test_saturation_and_contrast_scale_around_their_means():
    torch.manual_seed(0)
    x = images(64)
    m = x.mean(1, keepdim=True)
    s = ((ops.saturation(x) - m) / (x - m)).flatten(1)
    assert torch.allclose(s, s[:, :1].expand_as(s), atol=1e-3)
    assert 0.0 <= s.min() and s.max() <= 2.0
    mc = x.mean((1, 2, 3), keepdim=True)
    c = ((ops.contrast(x) - mc) / (x - mc)).flatten(1)
    assert 0.5 - 1e-4 <= c.min() and c.max() <= 1.5 + 1e-4


def _match_shift(src, out, max_shift):
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            shifted = torch.zeros_like(src)
            h, w = src.shape[-2:]
            ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
            xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            shifted[..., yd, xd] = src[..., ys, xs]
            if torch.equal(shifted, out):
                return dy, dx
    return None


def test_translation_shifts_by_whole_pixels_with_zero_padding():
    torch.manual_seed(0)
    x = images(32, r=16)
    y = ops.translation(x, 0.125)  # up to 2 pixels at 16 px
    shifts = [_match_shift(x[i], y[i], 2) for i in range(32)]
    assert all(s is not None for s in shifts)
    assert len(set(shifts)) > 5


def test_cutout_zeroes_one_half_size_square():
    torch.manual_seed(0)
    x = images(64, c=4) + 3  # no zeros anywhere
    y = ops.cutout(x, 0.5)
    zeros = (y == 0)
    assert torch.equal(zeros[:, 0], zeros[:, 3])  # every channel, the same square
    counts = zeros[:, 0].flatten(1).sum(1)
    assert counts.max() == 64 and counts.min() >= 16  # 8x8, clipped at the border to >= 4x4
    assert torch.equal(y[~zeros], x[~zeros])


def test_diffaugment_keeps_gradients_to_g():
    spec = parse_trial(tiny_config(**{"augment.policy": "diffaugment"}))
    trial = Trial(spec, "/nonexistent")
    trial.build()
    m = trial.models
    stats = generator_step(m, Sampler(0), 8, 1, 0, torch.device("cpu"))
    grads = [p.grad for p in m.G.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert torch.isfinite(stats["g_loss"])


def test_diffaugment_gradient_is_the_transform_jacobian():
    aug = AUGMENTS.build("diffaugment", {"policy": "color"})
    x = images(4).requires_grad_(True)
    torch.manual_seed(3)
    y = aug.fake(x)
    y.sum().backward()
    # sum of (x - m) * s + m over pixels has a non-trivial but finite derivative
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_diffaugment_colour_leaves_the_mask():
    torch.manual_seed(0)
    aug = AUGMENTS.build("diffaugment", {"policy": "color"}, channels=4)
    x = images(8, c=4)
    y = aug(x)
    assert torch.equal(y[:, 3], x[:, 3])
    assert not torch.equal(y[:, :3], x[:, :3])


def test_diffaugment_geometry_moves_the_mask_with_the_image():
    torch.manual_seed(0)
    aug = AUGMENTS.build("diffaugment", {"policy": "translation,cutout"}, channels=4)
    x = images(8, c=1).expand(-1, 4, -1, -1).contiguous()  # mask == each colour channel
    y = aug(x)
    assert torch.equal(y[:, 0], y[:, 3])


# ------------------------------------------------------------------------- flip
def test_flip_mirrors_reals_only():
    torch.manual_seed(0)
    aug = AUGMENTS.build("flip", {})
    x = images(32)
    assert torch.equal(aug.fake(x), x)
    y = aug.real(x)
    same = [torch.equal(y[i], x[i]) for i in range(32)]
    mirrored = [torch.equal(y[i], x[i].flip(-1)) for i in range(32)]
    assert all(s or f for s, f in zip(same, mirrored))
    assert 4 < sum(mirrored) < 28


# -------------------------------------------------------------------------- ADA
def test_ada_at_p0_is_the_identity_and_at_p1_changes_every_image():
    x = images(8)
    assert AUGMENTS.build("ada", {"p": 0.0})(x) is x
    torch.manual_seed(0)
    y = AUGMENTS.build("ada", {"p": 1.0})(x)
    assert all(not torch.allclose(y[i], x[i]) for i in range(8))
    assert torch.isfinite(y).all()


def test_ada_blit_is_lossless():
    torch.manual_seed(0)
    kw = dict(ONLY_GEOMETRIC, p=1.0, scale=False, rotate=False, aniso=False, xfrac=False, xint=False)
    y = AUGMENTS.build("ada", kw)(images(8))
    x = images(8)
    for i in range(8):  # flips and quarter turns permute pixels exactly
        assert torch.allclose(y[i].flatten().sort()[0], x[i].flatten().sort()[0], atol=1e-5)


def test_ada_geometry_moves_the_mask_and_colour_leaves_it():
    torch.manual_seed(0)
    x = images(8, c=1).expand(-1, 4, -1, -1).contiguous()
    y = AUGMENTS.build("ada", dict(ONLY_GEOMETRIC, p=1.0), channels=4)(x)
    assert torch.allclose(y[:, 0], y[:, 3], atol=1e-6)
    assert not torch.allclose(y, x)
    x = images(8, c=4)
    y = AUGMENTS.build("ada", dict(ONLY_COLOUR, p=1.0), channels=4)(x)
    assert torch.equal(y[:, 3], x[:, 3])
    assert not torch.allclose(y[:, :3], x[:, :3])


def test_ada_is_differentiable():
    torch.manual_seed(0)
    x = images(4).requires_grad_(True)
    AUGMENTS.build("ada", {"p": 1.0})(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_ada_p_rises_while_d_is_overconfident_and_falls_when_not():
    ada = AUGMENTS.build("ada", {"interval": 4, "speed_kimg": 1.0, "target": 0.6})
    step = 4 * 8 / 1000.0
    for _ in range(4 * 5):  # D says "real" to every real: r_t = 1 > 0.6
        ada.observe(torch.full((8,), 3.0))
    assert float(ada.p) == pytest.approx(5 * step)
    assert ada.stats()["ada_rt"] == 1.0
    for _ in range(4 * 2):  # r_t = 0 < 0.6
        ada.observe(torch.tensor([1.0, -1.0] * 4))
    assert float(ada.p) == pytest.approx(3 * step)
    for _ in range(4 * 10):
        ada.observe(-torch.ones(8))
    assert float(ada.p) == 0.0  # clamped
    fixed = AUGMENTS.build("ada", {"p": 0.3, "adaptive": False})
    for _ in range(40):
        fixed.observe(torch.ones(8))
    assert float(fixed.p) == pytest.approx(0.3)


def test_ada_state_round_trips_p_and_the_partial_interval():
    ada = AUGMENTS.build("ada", {"interval": 4, "speed_kimg": 1.0})
    for _ in range(6):
        ada.observe(torch.ones(8))
    other = AUGMENTS.build("ada", {"interval": 4, "speed_kimg": 1.0})
    other.load_state_dict(copy.deepcopy(ada.state_dict()))
    assert float(other.p) == float(ada.p) > 0
    assert other.passes == 2 and other._p_host == ada._p_host
    for aug in (ada, other):
        for _ in range(2):
            aug.observe(torch.ones(8))
    assert float(other.p) == float(ada.p)


def test_ada_p_rises_when_d_overfits_a_tiny_dataset(tmp_path):
    from harness.store import TrialRecord
    from harness.trial import run_trial

    cfg = tiny_config(**{
        "dataset.kwargs": {"count": 8}, "augment.policy": "ada",
        "augment.kwargs": {"interval": 2, "speed_kimg": 0.5},
        "optimization.iterations": 60, "optimization.lr_d": 1e-3,
        "eval.every": 0, "sample_every": 0, "log_every": 10, "checkpoint_every": 60,
    })
    assert run_trial(cfg, tmp_path / "t").status == "completed"
    ps = [r["augment"]["ada_p"] for r in TrialRecord(tmp_path / "t").reports()]
    assert ps[-1] > 0.1, ps
