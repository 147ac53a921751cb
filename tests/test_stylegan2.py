"""StyleGAN2: the math of its parts, its size against the published configuration, the
path-length regularizer, EMA by half-life, what validation refuses, and training with
every augmentation and the transfer methods that make sense for it."""
import math

import pytest
import torch

from harness import zoo
from harness.errors import ConfigError
from harness.registry import ARCHITECTURES
from harness.spec import parse_trial
from harness.store import TrialRecord
from harness.trial import run_trial
from tests.conftest import tiny_config
from variants.architectures.stylegan2 import (EqualConv2d, EqualLinear, MinibatchStd,
                                              downsample2d, modulated_conv2d, upsample2d)
from variants.regularize.pl import PathLength, PathLengthParams, path_lengths

TINY_SG2 = {"z_dim": 16, "w_dim": 16, "mapping_layers": 2, "channel_base": 256, "channel_max": 16, "mbstd_group": 2}


def sg2_config(**overrides):
    base = {"architecture.name": "stylegan2", "architecture.kwargs": dict(TINY_SG2), "loss.name": "non_saturating"}
    return tiny_config(**{**base, **overrides})


def networks(resolution=16, channels=3, **kwargs):
    arch = ARCHITECTURES.build("stylegan2", {**TINY_SG2, **kwargs}, resolution=resolution, channels=channels)
    return arch.make_generator(), arch.make_discriminator()


# ----------------------------------------------------------------------- the size
def test_the_256px_configuration_has_paper256s_parameter_counts():
    """stylegan2-ada-pytorch's ``paper256`` (fmaps 0.5: channel_base 16384, channel_max
    512, z = w = 512, 8 mapping layers; its low-shot configuration) prints G 24,767,458 and
    D 24,001,089 parameters; the defaults here build exactly that at 256 px, RGB."""
    arch = ARCHITECTURES.build("stylegan2", {}, resolution=256, channels=3)
    with torch.device("meta"):
        G, D = arch.make_generator(), arch.make_discriminator()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert abs(count(G) - 24_767_458) <= 0.01 * 24_767_458 and count(G) == 24_767_458
    assert abs(count(D) - 24_001_089) <= 0.01 * 24_001_089 and count(D) == 24_001_089
    assert G.num_ws == 14  # 2 per resolution from 8 px, 1 at 4 px, + the last toRGB


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [3, 4])
def test_shapes_gradients_and_sampling_range(resolution, channels):
    torch.manual_seed(0)
    G, D = networks(resolution, channels)
    z = G.sample_latent(4)
    x = G(z)
    assert x.shape == (4, channels, resolution, resolution)
    logits = D(x)
    assert logits.shape == (4,) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in G.parameters())
    G.eval()
    sample = G(z)
    assert sample.min() >= -1 and sample.max() <= 1
    assert torch.equal(sample, G(z))  # sampling is deterministic (each layer's fixed noise)


# ------------------------------------------------------------------------ the math
def test_demodulated_weights_give_unit_output_variance_for_unit_input():
    torch.manual_seed(0)
    x = torch.randn(16, 32, 24, 24)
    weight = torch.randn(24, 32, 3, 3) * 0.3
    styles = torch.rand(16, 32) * 3 + 0.1  # any per-sample scales
    out = modulated_conv2d(x, weight, styles)[:, :, 1:-1, 1:-1]  # borders see zero padding
    per_map = out.var(dim=(0, 2, 3))
    assert torch.allclose(per_map, torch.ones(24), atol=0.06), per_map
    raw = modulated_conv2d(x, weight, styles, demodulate=False)[:, :, 1:-1, 1:-1]
    assert raw.var() > 2.0  # without demodulation the styles' scale passes through
    # equals a convolution with each sample's own modulated, demodulated weights
    w = weight[None] * styles[:, None, :, None, None]
    w = w / w.square().sum(dim=(2, 3, 4), keepdim=True).add(1e-8).sqrt()
    one = torch.nn.functional.conv2d(x[3:4], w[3], padding=1)
    torch.testing.assert_close(modulated_conv2d(x, weight, styles)[3:4], one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("lr_mul", [1.0, 0.01])
def test_equalised_learning_rate_scales_by_one_over_sqrt_fan_in_at_run_time(lr_mul):
    torch.manual_seed(0)
    layer = EqualLinear(400, 300, lr_mul=lr_mul)
    assert layer.weight_gain == pytest.approx(lr_mul / math.sqrt(400))
    assert layer.weight.std().item() == pytest.approx(1.0 / lr_mul, rel=0.02)  # stored N(0, 1) / lr_mul
    x = torch.randn(512, 400)
    out = layer(x)
    assert out.std().item() == pytest.approx(1.0, rel=0.05)  # unit output for unit input: scaled at run time
    with torch.no_grad():
        layer.weight.mul_(2.0)
    assert torch.allclose(layer(x), 2 * out, atol=1e-5)  # the scale is applied on every call, not baked in
    conv = EqualConv2d(8, 4, 3)
    assert conv.weight_gain == pytest.approx(1 / math.sqrt(8 * 9))
    # Adam-free check of the point of it: the gradient w.r.t. the stored weight is scaled by the gain too
    layer = EqualLinear(100, 1)
    layer(torch.ones(1, 100)).sum().backward()
    assert torch.allclose(layer.weight.grad, torch.full((1, 100), 1 / math.sqrt(100)))


def test_resampling_filters_keep_constants_and_sizes():
    x = torch.ones(2, 3, 8, 8)
    up, down = upsample2d(x), downsample2d(x)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.ones(1)) and torch.allclose(down[:, :, 1:-1, 1:-1], torch.ones(1))


def test_minibatch_std_appends_the_group_std():
    x = torch.randn(8, 4, 4, 4)
    y = MinibatchStd(group=4, features=1)(x)
    assert y.shape == (8, 5, 4, 4)
    groups = x.reshape(4, 2, 4, 4, 4)  # sample i is in group i % 2
    want = groups.std(dim=0, unbiased=False).mean(dim=(1, 2, 3))
    assert torch.allclose(y[0, 4, 0, 0], want[0], atol=1e-5) and torch.allclose(y[1, 4, 0, 0], want[1], atol=1e-5)


def test_style_mixing_uses_two_latents_from_a_random_layer():
    torch.manual_seed(0)
    G, _ = networks(32, mixing=1.0)
    z = torch.randn(4, 16)
    cutoffs = set()
    for _ in range(20):
        ws = G.styles(z)
        w1 = G.mapping(z)
        first = (ws - w1[:, None]).abs().amax(dim=(0, 2)) < 1e-6  # layers that carry z's own w
        cutoff = int(first.sum())
        assert 1 <= cutoff < G.num_ws and bool(first[:cutoff].all()) and not bool(first[cutoff:].any())
        assert torch.allclose(ws[:, cutoff:], ws[:, cutoff:cutoff + 1].expand_as(ws[:, cutoff:]))  # one second w
        cutoffs.add(cutoff)
    assert len(cutoffs) > 3
    G, _ = networks(32, mixing=0.0)
    ws = G.styles(z)
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


def test_truncation_pulls_w_towards_its_running_mean_when_sampling():
    torch.manual_seed(0)
    G, _ = networks(16, truncation_psi=0.7)
    for _ in range(5):
        G.styles(torch.randn(8, 16))  # training mode: w_avg moves
    w_avg = G.mapping.w_avg.clone()
    assert w_avg.abs().sum() > 0
    z = torch.randn(3, 16)
    G.eval()
    w = G.mapping(z)
    ws = G.styles(z)
    assert torch.allclose(ws, (w_avg + 0.7 * (w - w_avg))[:, None].expand_as(ws), atol=1e-6)
    assert G.sampling()["truncation_psi"] == 0.7


# --------------------------------------------------------------- path length
def test_path_length_term_and_its_running_mean():
    torch.manual_seed(0)
    G, _ = networks(16, mixing=0.0)
    G.eval()  # fixed noise inputs: only the image-space noise u is random
    reg = PathLength(PathLengthParams(interval=4, batch_shrink=2, decay=0.01), weight=2.0)
    z = torch.randn(8, 16)

    from harness.interfaces import GStepContext

    ctx = lambda it: GStepContext(None, None, None, None, None, it, G=G, z=z)  # noqa: E731
    assert reg.g_term(ctx(3)) is None  # lazy: every 4th iteration only
    torch.manual_seed(1)
    want1 = path_lengths(G, z[:4]).detach()
    torch.manual_seed(1)
    term1 = reg.g_term(ctx(4))
    a1 = 0.01 * want1.mean().item()
    assert reg.running_mean == pytest.approx(a1, rel=1e-5)
    assert term1.item() == pytest.approx(4 * (want1 - a1).square().mean().item(), rel=1e-4)
    torch.manual_seed(2)
    want2 = path_lengths(G, z[:4]).detach()
    torch.manual_seed(2)
    reg.g_term(ctx(8))
    assert reg.running_mean == pytest.approx(a1 + 0.01 * (want2.mean().item() - a1), rel=1e-5)
    other = PathLength(PathLengthParams())
    other.load_state_dict(reg.state_dict())
    assert other.running_mean == reg.running_mean and reg.stats() == {"pl_mean": reg.running_mean}
    assert term1.requires_grad  # it trains G


def test_path_length_of_a_linear_synthesis_is_the_jacobian_norm():
    """A G whose synthesis is img = A ws: ||J^T u|| is known in closed form."""
    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.randn(3 * 4 * 4, 2 * 5)

        def styles(self, z):
            return z.reshape(-1, 2, 5).clone().requires_grad_(True)

        def synthesis(self, ws):
            return (ws.flatten(1) @ self.A.t()).reshape(-1, 3, 4, 4)

    torch.manual_seed(0)
    G, z = Linear(), torch.randn(6, 10)
    torch.manual_seed(3)
    got = path_lengths(G, z)
    torch.manual_seed(3)
    u = torch.randn(6, 3, 4, 4) / 4.0
    g = (u.flatten(1) @ G.A).reshape(6, 2, 5)
    torch.testing.assert_close(got, g.square().sum(2).mean(1).sqrt())


# --------------------------------------------------------------------- the EMA
def test_ema_by_half_life_in_images():
    spec = parse_trial(sg2_config(**{"ema": {"half_life_images": 80}, "optimization.batch_size": 8,
                                     "optimization.accumulation": {"d": 1, "g": 2}}))
    decay = spec.ema.step_decay(spec.optimization.effective_batch_g)
    assert decay == pytest.approx(0.5 ** (16 / 80))
    assert decay ** 5 == pytest.approx(0.5)  # 5 steps of 16 images = one half-life
    assert parse_trial(sg2_config()).ema.step_decay(16) == 0.9  # without it: the decay as set


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("overrides, path, fragment", [
    ({"dataset.resolution": 28}, "dataset.resolution", "a power of two from 16"),
    ({"dataset.resolution": 8}, "dataset.resolution", "a power of two from 16"),
    ({"architecture.kwargs": {**TINY_SG2, "mapping_layers": 0}}, "architecture.kwargs.mapping_layers", ">= 1"),
    ({"architecture.kwargs": {**TINY_SG2, "mapping_layers": 17}}, "architecture.kwargs.mapping_layers", "<= 16"),
    ({"architecture.kwargs": {**TINY_SG2, "channel_base": 8}}, "architecture.kwargs.channel_base", "at least"),
    ({"architecture.kwargs": {**TINY_SG2, "channel_max": 0}}, "architecture.kwargs.channel_max", ">= 1"),
    ({"architecture.kwargs": {**TINY_SG2, "truncation_psi": 0.0}}, "architecture.kwargs.truncation_psi", "> 0"),
    ({"architecture.kwargs": {**TINY_SG2, "truncation_psi": 1.5}}, "architecture.kwargs.truncation_psi", "<= 1"),
    ({"architecture.kwargs": {**TINY_SG2, "mbstd_channels": 3}}, "architecture.kwargs.mbstd_channels", "divisor"),
    ({"transfer.method": "bsa", "transfer.source": "tiny-src"}, "transfer.method", "no batch norm"),
    ({"regularizers": [{"name": "r1"}, {"name": "pl", "kwargs": {"interval": 0}}]},
     "regularizers[1].kwargs.interval", ">= 1"),
    ({"ema": {"half_life_images": 0}}, "ema.half_life_images", ">= 1"),
])
def test_what_stylegan2_cannot_build_is_refused_naming_the_field(overrides, path, fragment):
    with pytest.raises(ConfigError) as err:
        parse_trial(sg2_config(**overrides))
    assert err.value.path == path, str(err.value)
    assert fragment in str(err.value), str(err.value)


def test_pl_needs_a_style_based_generator():
    with pytest.raises(ConfigError) as err:
        parse_trial(tiny_config(**{"regularizers": [{"name": "pl", "weight": 2.0}]}))
    assert err.value.path == "regularizers[0].name" and "stylegan2" in str(err.value)


# -------------------------------------------------------------- training with it
@pytest.fixture(scope="module")
def sg2_zoo(tmp_path_factory):
    """A tiny StyleGAN2 source model in a zoo of its own (16 px shapes)."""
    root = tmp_path_factory.mktemp("sg2-zoo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANBENCH_CACHE", str(root / "cache"))
        run_trial(sg2_config(**{"eval.every": 0, "sample_every": 0, "name": "sg2-source",
                                "optimization.iterations": 4}), root / "trial")
        zoo.export(root / "trial", "sg2-src", zoo=root / "zoo")
    return root / "zoo"


@pytest.mark.parametrize("transfer", ["scratch", "finetune", "freezed"])
@pytest.mark.parametrize("augment", ["none", "diffaugment", "ada"])
def test_stylegan2_trains_with_every_augmentation_and_transfer(sg2_zoo, monkeypatch, tmp_path, augment, transfer):
    monkeypatch.setenv("GANBENCH_ZOO", str(sg2_zoo))
    cfg = sg2_config(**{
        "augment.policy": augment, "augment.kwargs": {"ada": {"p": 0.5, "speed_kimg": 1.0}}.get(augment, {}),
        "transfer.method": transfer, "transfer.source": None if transfer == "scratch" else "sg2-src",
        "transfer.kwargs": {"layers": 1} if transfer == "freezed" else {},
        "regularizers": [{"name": "r1", "weight": 1.0, "kwargs": {"interval": 2}},
                         {"name": "pl", "weight": 2.0, "kwargs": {"interval": 2}}],
        "ema": {"half_life_images": 100}, "optimization.accumulation": {"d": 2, "g": 2},
        "optimization.batch_size": 4, "optimization.iterations": 4, "eval.every": 0, "sample_every": 0,
        "log_every": 2, "checkpoint_every": 100})
    result = run_trial(cfg, tmp_path / "t")
    assert result.status == "completed", result.error
    rows = TrialRecord(tmp_path / "t").reports()
    assert [r["iteration"] for r in rows] == [2, 4]
    for row in rows:
        assert all(math.isfinite(v) for v in row["losses"].values()), row["losses"]
        assert row["effective_batch"] == 8
    assert "reg_r1" in rows[-1]["losses"] and "reg_pl_g" in rows[-1]["losses"]
    assert rows[-1]["regularizers"]["pl_mean"] > 0


def test_a_resumed_stylegan2_trial_restores_the_path_length_mean_and_records_psi(tmp_path):
    cfg = sg2_config(**{"regularizers": [{"name": "pl", "weight": 2.0, "kwargs": {"interval": 2}}],
                        "architecture.kwargs": {**TINY_SG2, "truncation_psi": 0.7},
                        "optimization.iterations": 12, "eval.every": 6, "eval.metrics": ["swd"],
                        "sample_every": 0, "log_every": 3, "checkpoint_every": 6})
    ref = run_trial(cfg, tmp_path / "ref")
    assert ref.status == "completed"

    class Crash(Exception):
        pass

    def crash_at_9(row, trial):
        if row["iteration"] == 9:
            raise Crash()

    with pytest.raises(Crash):
        run_trial(cfg, tmp_path / "resumed", callbacks=[crash_at_9])
    assert run_trial(cfg, tmp_path / "resumed").status == "completed"  # from the checkpoint at 6
    want, got = TrialRecord(tmp_path / "ref").reports(), TrialRecord(tmp_path / "resumed").reports()
    assert [r["iteration"] for r in got] == [3, 6, 9, 12]
    assert [r["regularizers"]["pl_mean"] for r in got] == [r["regularizers"]["pl_mean"] for r in want]
    assert got[-1]["regularizers"]["pl_mean"] > 0
    evals = [r for r in got if "metrics" in r]
    assert evals and all(r["protocol"]["swd"]["sampling"] == {"truncation_psi": 0.7, "noise": "per-layer fixed"}
                         for r in evals)


def test_a_source_of_another_stylegan2_configuration_is_refused(sg2_zoo, monkeypatch):
    monkeypatch.setenv("GANBENCH_ZOO", str(sg2_zoo))
    with pytest.raises(ConfigError) as err:
        parse_trial(sg2_config(**{"transfer.method": "finetune", "transfer.source": "sg2-src",
                                  "architecture.kwargs": {**TINY_SG2, "channel_base": 512}}))
    assert err.value.path == "architecture.kwargs" and "channel_base" in str(err.value), str(err.value)
    parse_trial(sg2_config(**{"transfer.method": "finetune", "transfer.source": "sg2-src"}))  # the same: accepted


def test_minegan_mines_a_stylegan2_source_and_refuses_pl(sg2_zoo, monkeypatch, tmp_path):
    """MineGAN's miner maps z into the source G's latent space: it works for StyleGAN2 (the
    miner sits before the mapping network); pl needs G's own styles and is refused with it."""
    monkeypatch.setenv("GANBENCH_ZOO", str(sg2_zoo))
    cfg = sg2_config(**{"transfer.method": "minegan", "transfer.source": "sg2-src",
                        "transfer.kwargs": {"mine_iterations": 2}, "augment.policy": "diffaugment",
                        "regularizers": [{"name": "r1", "weight": 1.0, "kwargs": {"interval": 2}}],
                        "optimization.iterations": 4, "optimization.batch_size": 4, "eval.every": 0,
                        "sample_every": 0, "log_every": 2, "checkpoint_every": 100})
    result = run_trial(cfg, tmp_path / "t")
    assert result.status == "completed", result.error
    rows = TrialRecord(tmp_path / "t").reports()
    assert rows[-1]["stage"] == "finetune" and all(math.isfinite(v) for r in rows for v in r["losses"].values())
    with pytest.raises(ConfigError) as err:
        parse_trial({**cfg, "regularizers": [{"name": "pl", "weight": 2.0}]})
    assert err.value.path == "regularizers[0].name" and "minegan" in str(err.value)
