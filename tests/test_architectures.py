"""Every architecture builds at 16/32/64 px with 3 or 4 channels and keeps its contract."""
import pytest
import torch

from harness.registry import ARCHITECTURES
from harness.spec import parse_trial
from tests.conftest import TINY_ARCH_KWARGS, tiny_config
from variants.architectures._common import base_and_steps
from variants.architectures.progressive import ProgressiveParams, schedule


def build(name, resolution, channels, **kwargs):
    params = dict(TINY_ARCH_KWARGS[name])
    if name == "progressive":
        params["start_resolution"] = resolution // 2
    if name == "biggan":
        params["attention"] = resolution // 2
    params.update(kwargs)
    spec = parse_trial(tiny_config(**{"architecture.name": name, "architecture.kwargs": params,
                                      "dataset.resolution": resolution, "dataset.channels": channels}))
    arch = ARCHITECTURES.build(name, spec.architecture.kwargs, resolution=resolution, channels=channels)
    return arch.make_generator(), arch.make_discriminator()


@pytest.mark.parametrize("name", ["dcgan", "resnet", "biggan", "progressive"])
@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [3, 4])
def test_shapes_and_range(name, resolution, channels):
    torch.manual_seed(0)
    G, D = build(name, resolution, channels)
    z = G.sample_latent(3)
    x = G(z)
    assert x.shape == (3, channels, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    logits = D(x)
    assert logits.shape == (3,)
    assert torch.isfinite(logits).all()
    # gradients reach G through D
    logits.sum().backward()
    grads = [p.grad is not None for n, p in G.named_parameters() if p.ndim > 1 and "to_rgb" not in n]
    assert all(grads)  # (progressive: only the active resolution's to_rgb is used)
    assert len(D.blocks()) >= 2


def test_base_and_steps():
    assert base_and_steps(32) == (4, 3)
    assert base_and_steps(28) == (7, 2)
    assert base_and_steps(56) == (7, 3)
    assert base_and_steps(128) == (4, 5)


def test_dcgan_follows_radford():
    G, D = build("dcgan", 32, 3, width=8)
    mods = list(G.modules()) + list(D.modules())
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d, torch.nn.Linear)) for m in mods)
    assert isinstance(list(G.net)[-1], torch.nn.Tanh)
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in D.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())
    # D's input layer has no batch norm
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.blocks()[0].modules())
    conv = G.net[0]
    assert abs(conv.weight.std().item() - 0.02) < 0.005


def test_dcgan_norm_none_has_no_batch_coupling():
    G, D = build("dcgan", 16, 3, norm="none")
    torch.manual_seed(1)
    x = torch.randn(6, 3, 16, 16)
    D.train()
    full = D(x)
    parts = torch.cat([D(x[:3]), D(x[3:])])
    assert torch.allclose(full, parts, atol=1e-6)


def test_resnet_critic_has_no_batch_norm_and_pools():
    G, D = build("resnet", 32, 3)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())
    assert len(G.blocks) == 3  # 4 -> 8 -> 16 -> 32


def test_biggan_features():
    G, D = build("biggan", 32, 3)
    # spectral norm everywhere
    sn = [m for m in G.modules() if hasattr(m, "parametrizations")]
    assert len(sn) > 5 and any(hasattr(m, "parametrizations") for m in D.modules())
    # hierarchical z: one chunk per block plus the input
    assert G.z_dim == G.chunk * (len(G.blocks) + 1)
    # self-attention where configured
    assert G.attn is not None
    # orthogonal regularisation is a positive differentiable term
    reg = G.regularization_loss()
    assert reg.item() > 0
    reg.backward()
    # truncation bounds every latent entry
    z = G.sample_latent(256, torch.Generator().manual_seed(0), truncation=0.5)
    assert z.abs().max() <= 0.5


def test_progressive_schedule_and_fade():
    p = ProgressiveParams(start_resolution=8, stage_iterations=10, fade_iterations=5)
    assert schedule(p, 32, 0) == (0, 1.0)
    assert schedule(p, 32, 9) == (0, 1.0)
    growth, alpha = schedule(p, 32, 12)
    assert growth == 1 and alpha == pytest.approx(0.4)
    assert schedule(p, 32, 15) == (1, 1.0)
    assert schedule(p, 32, 1000) == (2, 1.0)
    G, D = build("progressive", 32, 3, start_resolution=8, stage_iterations=10, fade_iterations=5)
    z = G.sample_latent(2)
    G.set_progress(0)
    early = G(z)
    assert early.shape[-1] == 32
    # at 8 px active resolution, the output is a nearest upsampling: 4x4 blocks are constant
    assert torch.equal(early[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2), early)
    D.set_progress(0)
    assert D(early).shape == (2,)
    G.set_progress(12)  # fading in 16 px
    mid = G(z)  # 16 px detail blended in: constant on 2x2 blocks, not on 4x4 blocks
    assert torch.equal(mid[..., ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2), mid)
    assert not torch.equal(mid[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2), mid)
    G.set_progress(1000)
    assert G.active == 3


def test_progressive_28_to_56():
    spec = parse_trial(tiny_config(**{
        "architecture.name": "progressive",
        "architecture.kwargs": {"width": 8, "z_dim": 8, "start_resolution": 28},
        "dataset.resolution": 56}))
    arch = ARCHITECTURES.build("progressive", spec.architecture.kwargs, resolution=56, channels=3)
    G, D = arch.make_generator(), arch.make_discriminator()
    G.set_progress(0)
    D.set_progress(0)
    x = G(G.sample_latent(2))
    assert x.shape == (2, 3, 56, 56)
    assert D(x).shape == (2,)
