"""BigGAN (Brock, Donahue & Simonyan 2019), single-class, as in seed study A.

* hierarchical latent: z is split into one chunk for the input layer and one per G
  block; each block is conditioned on [shared class embedding, its z chunk] through
  conditional batch norm (gain 1 + W_g c, bias W_b c);
* self-attention (SAGAN) after the block whose output has resolution ``attention``;
* spectral norm on every conv/linear layer of G and D;
* orthogonal regularisation of G's weights (beta * ||W W^T * (1 - I)||_F^2, BigGAN's
  variant), returned by :meth:`regularization_loss` and added to G's loss;
* truncation at sampling time: ``eval.truncation`` (see ``Generator.sample_latent``).

Channel multipliers follow BigGAN-PyTorch's 128 px arch (G 16,16,8,4,2 x ch; D
1,2,4,8,16,16 x ch, the last block without downsampling); ``width`` is ``ch`` (96 in
the paper: 70.3 M G and 88.8 M D parameters here, vs 70.4 M / 88.0 M published).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
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
class BigGANParams:
    width: int = field(default=96, metadata={"min": 1, "max": 8192})
    z_dim: int = field(default=120, metadata={"min": 2, "max": 8192})
    shared_dim: int = field(default=128, metadata={"min": 1, "max": 8192})
    # Resolution of the feature map that gets self-attention (0 = none); 64 at 128 px.
    attention: int = field(default=0, metadata={"min": 0, "max": 1024})
    ortho: float = field(default=1e-4, metadata={"min": 0.0})


def _mult(steps: int, i: int) -> int:
    return min(2 ** (steps - 1 - i), 16)


class SelfAttention(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.theta = nn.Conv2d(c, max(c // 8, 1), 1, bias=False)
        self.phi = nn.Conv2d(c, max(c // 8, 1), 1, bias=False)
        self.g = nn.Conv2d(c, max(c // 2, 1), 1, bias=False)
        self.o = nn.Conv2d(max(c // 2, 1), c, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        theta = self.theta(x).flatten(2)  # n x c/8 x hw
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # n x c/8 x hw/4
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # n x c/2 x hw/4
        beta = torch.softmax(torch.bmm(theta.transpose(1, 2), phi), dim=-1)  # n x hw x hw/4
        o = torch.bmm(g, beta.transpose(1, 2)).view(n, -1, h, w)
        return x + self.gamma * self.o(o)


class ConditionalBN(nn.Module):
    def __init__(self, c: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, affine=False)
        self.gain = nn.Linear(cond_dim, c, bias=False)
        self.bias = nn.Linear(cond_dim, c, bias=False)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gain = (1 + self.gain(cond)).view(x.shape[0], -1, 1, 1)
        bias = self.bias(cond).view(x.shape[0], -1, 1, 1)
        return self.bn(x) * gain + bias


class GBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.bn1 = ConditionalBN(c_in, cond_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.bn2 = ConditionalBN(c_out, cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), cond)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, preactivation: bool, downsample: bool = True):
        super().__init__()
        self.preactivation = preactivation
        self.downsample = downsample
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if not self.downsample:
            return h + self.skip(x)
        h = F.avg_pool2d(h, 2)
        if self.preactivation:
            return h + F.avg_pool2d(self.skip(x), 2)
        return h + self.skip(F.avg_pool2d(x, 2))


class BigGANGenerator(Generator):
    def __init__(self, p: BigGANParams, resolution: int, channels: int):
        super().__init__()
        self.base, steps = base_and_steps(resolution)
        self.ortho = p.ortho
        self.chunk = p.z_dim // (steps + 1)
        self.z_dim = self.chunk * (steps + 1)
        c_in = [p.width * min(2 ** (steps - i), 16) for i in range(steps)]
        c_out = [p.width * _mult(steps, i) for i in range(steps)]
        self.c0 = c_in[0]
        self.shared = nn.Embedding(1, p.shared_dim)
        self.linear = nn.Linear(self.chunk, self.base * self.base * self.c0)
        self.blocks = nn.ModuleList(
            [GBlock(ci, co, p.shared_dim + self.chunk) for ci, co in zip(c_in, c_out)]
        )
        self.attention_after: Optional[int] = None
        self.attn: Optional[nn.Module] = None
        for i in range(steps):
            if self.base * 2 ** (i + 1) == p.attention:
                self.attention_after = i
                self.attn = SelfAttention(c_out[i])
        self.out_bn = nn.BatchNorm2d(c_out[-1])
        self.out_conv = nn.Conv2d(c_out[-1], channels, 3, 1, 1)
        init_xavier(self)
        apply_spectral_norm(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(z, self.chunk, dim=1)
        shared = self.shared(torch.zeros(z.shape[0], dtype=torch.long, device=z.device))
        h = self.linear(chunks[0]).view(z.shape[0], self.c0, self.base, self.base)
        for i, block in enumerate(self.blocks):
            h = block(h, torch.cat([shared, chunks[i + 1]], dim=1))
            if i == self.attention_after:
                h = self.attn(h)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))

    def regularization_loss(self) -> Optional[torch.Tensor]:
        if self.ortho == 0:
            return None
        total = None
        for name, w in self.named_parameters():
            if w.ndim < 2 or name.startswith("shared"):
                continue
            w = w.flatten(1)
            gram = w @ w.t()
            off = gram * (1 - torch.eye(gram.shape[0], device=w.device, dtype=w.dtype))
            term = (off ** 2).sum()
            total = term if total is None else total + term
        return self.ortho * total


class BigGANDiscriminator(SumPoolDiscriminator):
    def __init__(self, p: BigGANParams, resolution: int, channels: int):
        super().__init__()
        base, steps = base_and_steps(resolution)
        outs = [p.width * min(2 ** i, 16) for i in range(steps)]
        ins = [channels] + outs[:-1]
        self._blocks = nn.ModuleList()
        size = resolution
        for i, (ci, co) in enumerate(zip(ins, outs)):
            self._blocks.append(DBlock(ci, co, preactivation=i > 0))
            size //= 2
            if size == p.attention:
                self._blocks.append(SelfAttention(co))
        # BigGAN's last D block keeps the base resolution (no downsampling).
        self._blocks.append(DBlock(outs[-1], outs[-1], preactivation=True, downsample=False))
        self.linear = nn.Linear(outs[-1], 1)
        init_xavier(self)
        apply_spectral_norm(self)



@ARCHITECTURES.register("biggan", params=BigGANParams)
class BigGAN(Architecture):
    @classmethod
    def check_config(cls, params, spec, prefix):
        resolution = spec.dataset.resolution
        check_resolution("biggan", resolution, prefix)
        base, steps = base_and_steps(resolution)
        allowed = [base * 2 ** i for i in range(1, steps + 1)]
        if params.attention and params.attention not in allowed:
            raise ConfigError(
                f"{prefix}architecture.kwargs.attention",
                params.attention,
                "0 (none) or a feature-map resolution of this model: " + ", ".join(map(str, allowed)),
            )
        if params.z_dim < steps + 1:
            raise ConfigError(
                f"{prefix}architecture.kwargs.z_dim", params.z_dim, f"at least {steps + 1} (one chunk per block + input)"
            )

    def make_generator(self) -> Generator:
        return BigGANGenerator(self.params, self.resolution, self.channels)

    def make_discriminator(self) -> Discriminator:
        return BigGANDiscriminator(self.params, self.resolution, self.channels)
