"""Progressive growing with fade-in (Karras et al. 2018), as in seed study C.

Training starts at ``start_resolution`` and doubles up to the dataset's resolution
(e.g. 28 -> 56 for the Unown glyphs, or 16 -> 32). Each resolution trains for
``stage_iterations``; the next one then fades in linearly over ``fade_iterations``
(alpha 0 -> 1): G's new block's output is blended with the upsampled previous output,
D's new block with the downsampled input.

The model always speaks the full resolution to the loop: G upsamples its current
output (nearest), D average-pools its input down to the current resolution. Real
images therefore reach D exactly as their box-downsampled versions, and the training
loop needs no knowledge of stages -- it only calls ``set_progress(iteration)``.

Blocks follow ProGAN: pixel norm + LeakyReLU(0.2) in G, two 3x3 convs per block,
a minibatch-standard-deviation feature before D's last block. (Equalised learning
rate is not used; Adam with the usual GAN betas trains these small models fine.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.interfaces import Architecture, Discriminator, Generator
from harness.registry import ARCHITECTURES
from variants.architectures._common import base_and_steps, check_resolution, init_normal


@dataclass
class ProgressiveParams:
    width: int = field(default=128, metadata={"min": 1, "max": 8192})
    z_dim: int = field(default=128, metadata={"min": 1, "max": 8192})
    start_resolution: int = field(default=16, metadata={"min": 4, "max": 1024})
    stage_iterations: int = field(default=1000, metadata={"min": 1, "max": 10 ** 9})
    fade_iterations: int = field(default=500, metadata={"min": 0, "max": 10 ** 9})


def schedule(p: ProgressiveParams, final: int, iteration: int) -> Tuple[int, float]:
    """(index of the newest active block counted from the start resolution, alpha)."""
    base, steps = base_and_steps(final)
    start_step = base_and_steps(p.start_resolution)[1] if p.start_resolution != base else 0
    n_growths = steps - start_step
    period = p.stage_iterations + p.fade_iterations
    growth = min(iteration // period, n_growths) if period else n_growths
    if growth >= n_growths:
        return n_growths, 1.0
    into = iteration - growth * period
    if into < p.stage_iterations:
        return growth, 1.0
    alpha = (into - p.stage_iterations) / max(p.fade_iterations, 1)
    return growth + 1, float(alpha)


def _pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class _GBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, upsample: bool):
        super().__init__()
        self.upsample = upsample
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = _pixel_norm(F.leaky_relu(self.conv1(x), 0.2))
        return _pixel_norm(F.leaky_relu(self.conv2(x), 0.2))


class ProgressiveGenerator(Generator):
    def __init__(self, p: ProgressiveParams, resolution: int, channels: int):
        super().__init__()
        self.p = p
        self.z_dim = p.z_dim
        self.resolution = resolution
        self.base, steps = base_and_steps(resolution)
        self.start_step = base_and_steps(p.start_resolution)[1] if p.start_resolution != self.base else 0
        self.input = nn.Linear(p.z_dim, self.base * self.base * p.width)
        # blocks[0] works at base resolution; blocks[i] at base * 2**i.
        self.blocks = nn.ModuleList([_GBlock(p.width, p.width, upsample=i > 0) for i in range(steps + 1)])
        self.to_rgb = nn.ModuleList([nn.Conv2d(p.width, channels, 1) for _ in range(steps + 1)])
        init_normal(self)
        # Derived from the iteration alone (set_progress), so not part of the state dict.
        self.active, self.alpha = steps, 1.0  # newest active block, its fade-in weight

    def set_progress(self, iteration: int) -> None:
        growth, alpha = schedule(self.p, self.resolution, iteration)
        self.active, self.alpha = self.start_step + growth, alpha

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        active = self.active
        h = _pixel_norm(self.input(_pixel_norm(z)).view(z.shape[0], -1, self.base, self.base))
        h = F.leaky_relu(h, 0.2)
        previous = None
        for i in range(active + 1):
            if i == active:
                previous = h
            h = self.blocks[i](h)
        out = self.to_rgb[active](h)
        alpha = self.alpha
        if alpha < 1.0 and active > 0:
            skip = F.interpolate(self.to_rgb[active - 1](previous), scale_factor=2, mode="nearest")
            out = skip + alpha * (out - skip)
        out = torch.tanh(out)
        factor = self.resolution // out.shape[-1]
        if factor > 1:
            out = F.interpolate(out, scale_factor=factor, mode="nearest")
        return out


class _DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), 0.2)
        x = F.leaky_relu(self.conv2(x), 0.2)
        return F.avg_pool2d(x, 2) if self.downsample else x


class ProgressiveDiscriminator(Discriminator):
    def __init__(self, p: ProgressiveParams, resolution: int, channels: int):
        super().__init__()
        self.p = p
        self.resolution = resolution
        self.base, steps = base_and_steps(resolution)
        self.start_step = base_and_steps(p.start_resolution)[1] if p.start_resolution != self.base else 0
        self.from_rgb = nn.ModuleList([nn.Conv2d(channels, p.width, 1) for _ in range(steps + 1)])
        # blocks[i] takes resolution base * 2**i down to base * 2**(i-1); blocks[0] is the head body.
        self.body = nn.ModuleList([_DBlock(p.width, p.width, downsample=True) for _ in range(steps + 1)])
        self.body[0] = _DBlock(p.width + 1, p.width, downsample=False)
        self.head = nn.Linear(p.width * self.base * self.base, 1)
        init_normal(self)
        self.active, self.alpha = steps, 1.0

    def set_progress(self, iteration: int) -> None:
        growth, alpha = schedule(self.p, self.resolution, iteration)
        self.active, self.alpha = self.start_step + growth, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        active = self.active
        size = self.base * 2 ** active
        if x.shape[-1] != size:
            x = F.adaptive_avg_pool2d(x, size)
        h = F.leaky_relu(self.from_rgb[active](x), 0.2)
        alpha = self.alpha
        for i in range(active, 0, -1):
            h = self.body[i](h)
            if i == active and alpha < 1.0:
                skip = F.leaky_relu(self.from_rgb[active - 1](F.avg_pool2d(x, 2)), 0.2)
                h = skip + alpha * (h - skip)
        # minibatch standard deviation (one feature map, ProGAN)
        std = torch.sqrt(h.var(dim=0, unbiased=False) + 1e-8).mean()
        h = torch.cat([h, std.expand(h.shape[0], 1, h.shape[2], h.shape[3])], dim=1)
        h = self.body[0](h)
        return self.head(h.flatten(1)).flatten()

    def blocks(self) -> List[nn.Module]:
        return list(self.from_rgb) + list(reversed(list(self.body))) + [self.head]


@ARCHITECTURES.register("progressive", params=ProgressiveParams)
class Progressive(Architecture):
    @classmethod
    def check_config(cls, params, spec, prefix):
        resolution = spec.dataset.resolution
        check_resolution("progressive", resolution, prefix)
        base, steps = base_and_steps(resolution)
        allowed = [base * 2 ** i for i in range(steps + 1)]
        if params.start_resolution not in allowed:
            raise ConfigError(
                f"{prefix}architecture.kwargs.start_resolution",
                params.start_resolution,
                "one of " + ", ".join(map(str, allowed)) + f" (halvings of dataset.resolution {resolution})",
            )

    def make_generator(self) -> Generator:
        return ProgressiveGenerator(self.params, self.resolution, self.channels)

    def make_discriminator(self) -> Discriminator:
        return ProgressiveDiscriminator(self.params, self.resolution, self.channels)
