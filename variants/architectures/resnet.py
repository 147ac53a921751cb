"""ResNet G/D of WGAN-GP (Gulrajani et al. 2017), as used by seed study D.

G: linear z -> base x base x width, then one residual up-block per doubling
(BN, ReLU, nearest upsample, 3x3 conv, BN, ReLU, 3x3 conv; 1x1-conv shortcut), then
BN, ReLU, 3x3 conv to the image channels and tanh. D: an optimised first block, then
residual down-blocks with average pooling (no batch norm in the critic, as WGAN-GP
requires), ReLU, global sum pooling and a linear layer. At 64 px: four blocks of 128
maps each, as in seed D.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import torch
import torch.nn.functional as F
from torch import nn

from harness.interfaces import Architecture, Discriminator, Generator
from harness.registry import ARCHITECTURES
from variants.architectures._common import (
    SumPoolDiscriminator,
    apply_spectral_norm,
    base_and_steps,
    check_resolution,
    init_xavier,
)


@dataclass
class ResNetParams:
    width: int = field(default=128, metadata={"min": 1, "max": 8192})
    z_dim: int = field(default=128, metadata={"min": 1, "max": 8192})
    # Spectral norm on D (SNGAN style); WGAN-GP's critic has none.
    spectral_norm_d: bool = False


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, first: bool):
        super().__init__()
        self.first = first
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        h = F.avg_pool2d(h, 2)
        if self.first:  # optimised block: pool, then project
            return h + self.skip(F.avg_pool2d(x, 2))
        return h + F.avg_pool2d(self.skip(x), 2)


class ResNetGenerator(Generator):
    def __init__(self, p: ResNetParams, resolution: int, channels: int):
        super().__init__()
        self.z_dim = p.z_dim
        self.base, steps = base_and_steps(resolution)
        self.width = p.width
        self.linear = nn.Linear(p.z_dim, self.base * self.base * p.width)
        self.blocks = nn.Sequential(*[UpBlock(p.width, p.width) for _ in range(steps)])
        self.out = nn.Sequential(
            nn.BatchNorm2d(p.width), nn.ReLU(inplace=True), nn.Conv2d(p.width, channels, 3, 1, 1), nn.Tanh()
        )
        init_xavier(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.width, self.base, self.base)
        return self.out(self.blocks(h))


class ResNetDiscriminator(SumPoolDiscriminator):
    def __init__(self, p: ResNetParams, resolution: int, channels: int):
        super().__init__()
        _, steps = base_and_steps(resolution)
        self._blocks = nn.ModuleList(
            [DownBlock(channels if i == 0 else p.width, p.width, first=i == 0) for i in range(steps)]
        )
        self.linear = nn.Linear(p.width, 1)
        init_xavier(self)
        if p.spectral_norm_d:
            apply_spectral_norm(self)



@ARCHITECTURES.register("resnet", params=ResNetParams)
class ResNet(Architecture):
    @classmethod
    def check_config(cls, params, spec, prefix):
        check_resolution("resnet", spec.dataset.resolution, prefix)

    def make_generator(self) -> Generator:
        return ResNetGenerator(self.params, self.resolution, self.channels)

    def make_discriminator(self) -> Discriminator:
        return ResNetDiscriminator(self.params, self.resolution, self.channels)
