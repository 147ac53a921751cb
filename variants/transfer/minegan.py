"""MineGAN (Wang et al. 2020, "MineGAN: Effective Knowledge Transfer from GANs to
Target Domains with Few Images"), seed study A's transfer method.

A small miner network M in front of the source generator maps the input noise u to
the region of the source latent space whose samples look most like the target:
the trial's G becomes ``G(M(u))``. Stage 1 (``mine_iterations``) trains M and D with
G frozen - G's parameters get no gradient and its batch-norm statistics are not
updated (G runs in eval mode), so G stays bit-identical to the source. Stage 2 fine-tunes
M, G and D together. The miner is an MLP with a residual connection whose last layer
starts at zero, so mining starts exactly at the source distribution (ganbench's
choice; the paper does not fix the initialisation).
"""
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from harness.interfaces import Generator
from harness.registry import TRANSFERS
from variants.transfer.common import FromSource


@dataclass
class MineGANParams:
    mine_iterations: int = field(default=1000, metadata={"min": 0, "max": 10 ** 9})
    hidden: Optional[int] = field(default=None, metadata={"min": 1, "max": 8192})  # null: G's z_dim
    layers: int = field(default=2, metadata={"min": 1, "max": 64})


class Miner(nn.Module):
    def __init__(self, z_dim: int, hidden: int, layers: int):
        super().__init__()
        mods = []
        width = z_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        last = nn.Linear(width, z_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*mods, last)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.net(u)


class MinedGenerator(Generator):
    """G(M(u)): samples latents like the source G, maps them through the miner."""

    def __init__(self, generator: Generator, miner: Miner):
        super().__init__()
        self.generator = generator
        self.miner = miner
        self.z_dim = generator.z_dim

    def sample_latent(self, n, generator=None, truncation=None):
        return self.generator.sample_latent(n, generator, truncation)

    def set_progress(self, iteration):
        self.generator.set_progress(iteration)

    def regularization_loss(self):
        return self.generator.regularization_loss()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.generator(self.miner(u))


@TRANSFERS.register("minegan", params=MineGANParams)
class MineGAN(FromSource):
    method = "minegan"

    def prepare(self, G, D, device):
        self.load_source(G, D)
        p = self.params
        miner = Miner(G.z_dim, p.hidden or G.z_dim, p.layers).to(device)
        return MinedGenerator(G, miner), D

    def set_stage(self, G, D, iteration):
        mining = iteration < self.params.mine_iterations
        G.generator.requires_grad_(not mining)
        G.generator.train(not mining)
        return "mine" if mining else "finetune"
