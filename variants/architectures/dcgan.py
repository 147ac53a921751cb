"""DCGAN (Radford, Metz & Chintala 2016), seed study B.

Guidelines followed exactly: strided convolutions instead of pooling (fractionally
strided in G), no fully connected hidden layers, batch norm in G and D (not on G's
output nor D's input layer), ReLU in G with tanh output, LeakyReLU(0.2) in D, weights
initialised N(0, 0.02). ``width`` is the channel count of the layer next to the image
(64 in the paper at 64 px); it doubles at every halving of resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch
from torch import nn

from harness.interfaces import Architecture, Discriminator, Generator
from harness.registry import ARCHITECTURES
from variants.architectures._common import (
    apply_spectral_norm,
    base_and_steps,
    check_resolution,
    init_normal,
)


@dataclass
class DCGANParams:
    width: int = field(default=64, metadata={"min": 1, "max": 8192})
    z_dim: int = field(default=100, metadata={"min": 1, "max": 8192})
    # "none" removes batch norm (no coupling between samples of a batch; tests use it).
    norm: str = field(default="batch", metadata={"choices": ("batch", "none")})
    # Spectral norm on D's layers (not in the paper; a common stabiliser).
    spectral_norm_d: bool = False


def _channels(width: int, steps: int) -> List[int]:
    """Channel counts from the smallest feature map to the one next to the image."""
    return [width * 2 ** (steps - 1 - i) for i in range(steps)]


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.Identity()


class DCGANGenerator(Generator):
    def __init__(self, p: DCGANParams, resolution: int, channels: int):
        super().__init__()
        self.z_dim = p.z_dim
        base, steps = base_and_steps(resolution)
        chans = _channels(p.width, steps)
        layers: List[nn.Module] = [
            nn.ConvTranspose2d(p.z_dim, chans[0], base, 1, 0, bias=p.norm == "none"),
            _norm(p.norm, chans[0]),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=p.norm == "none"),
                _norm(p.norm, c_out),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(Discriminator):
    def __init__(self, p: DCGANParams, resolution: int, channels: int):
        super().__init__()
        base, steps = base_and_steps(resolution)
        chans = list(reversed(_channels(p.width, steps)))  # image side first
        self._blocks = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(channels, chans[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))]
        )
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            self._blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_out, 4, 2, 1, bias=p.norm == "none"),
                    _norm(p.norm, c_out),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
        self.head = nn.Conv2d(chans[-1], 1, base, 1, 0)
        init_normal(self)
        if p.spectral_norm_d:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._blocks:
            x = block(x)
        return self.head(x).flatten()

    def blocks(self) -> List[nn.Module]:
        return list(self._blocks) + [self.head]


@ARCHITECTURES.register("dcgan", params=DCGANParams)
class DCGAN(Architecture):
    @classmethod
    def check_config(cls, params, spec, prefix):
        check_resolution("dcgan", spec.dataset.resolution, prefix)

    def make_generator(self) -> Generator:
        return DCGANGenerator(self.params, self.resolution, self.channels)

    def make_discriminator(self) -> Discriminator:
        return DCGANDiscriminator(self.params, self.resolution, self.channels)
