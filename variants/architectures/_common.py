"""Shared helpers of the architectures (geometry, initialisation, spectral norm)."""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.interfaces import Discriminator


def base_and_steps(resolution: int) -> Tuple[int, int]:
    """Split ``resolution`` into ``base * 2**steps`` with base in [4, 7].

    32 -> (4, 3); 64 -> (4, 4); 28 -> (7, 2); 56 -> (7, 3).
    """
    base, steps = resolution, 0
    while base % 2 == 0 and base // 2 >= 4:
        base //= 2
        steps += 1
    return base, steps


def check_resolution(name: str, resolution: int, prefix: str, min_steps: int = 1) -> None:
    base, steps = base_and_steps(resolution)
    if base > 7 or steps < min_steps:
        raise ConfigError(
            f"{prefix}dataset.resolution",
            resolution,
            f"a resolution {name} can build: b * 2**k with b in 4..7 and k >= {min_steps} "
            "(e.g. 16, 28, 32, 56, 64, 128)",
        )


def apply_spectral_norm(root: nn.Module) -> nn.Module:
    """Spectral norm on every conv/linear layer under ``root`` (after initialisation)."""
    for m in list(root.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.utils.parametrizations.spectral_norm(m)
    return root


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """Radford et al.: weights N(0, std); batch-norm scale N(1, std), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def init_xavier(module: nn.Module) -> None:
    """BigGAN/WGAN-GP style: orthogonal-ish Xavier for conv/linear weights."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.xavier_uniform_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class SumPoolDiscriminator(Discriminator):
    """A stack of blocks, then ReLU, global sum pooling and a linear layer (WGAN-GP
    ResNet, SNGAN, BigGAN). Subclasses fill ``self._blocks`` and ``self.linear``."""

    _blocks: nn.ModuleList
    linear: nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._blocks:
            x = block(x)
        return self.linear(F.relu(x).sum(dim=(2, 3))).flatten()

    def blocks(self) -> List[nn.Module]:
        return list(self._blocks) + [self.linear]
