"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"),
config E/F as stylegan2-ada-pytorch trains it: the field's baseline for low-shot work.

- **Mapping network**: ``mapping_layers`` fully connected layers (lrelu) from the
  2nd-moment-normalised z to w, at a learning rate ``mapping_lr`` x the optimizer's; a
  running mean of w (``w_avg``, decay 0.995) for the truncation trick.
- **Synthesis** (skip generator): a learned 4x4 constant, then per resolution two 3x3
  *modulated* convolutions (style = affine(w), bias initialised to 1) with **weight
  demodulation**, per-layer **noise inputs** (random while training, each layer's fixed
  noise when sampling) scaled by a learned strength, and a toRGB (modulated 1x1, not
  demodulated) whose outputs are summed across resolutions through [1,3,3,1] upsampling.
- **Discriminator** (residual): fromRGB at full resolution, residual blocks (two 3x3
  convolutions and a 1x1 skip, each branch scaled by 1/sqrt(2)) with [1,3,3,1] low-pass
  downsampling, then **minibatch standard deviation**, a 3x3 conv, a dense layer and the
  logit.
- **Equalised learning rate** everywhere: weights are stored N(0, 1) (/ lr multiplier)
  and scaled by ``lr_mul / sqrt(fan_in)`` at run time.
- **Style mixing** regularisation (``mixing`` probability): while training, a batch's
  latents switch to a second z's at a random layer.
- **Truncation trick** when sampling (eval mode: the EMA generator's metrics and grids):
  ``w = w_avg + psi (w - w_avg)``, recorded in every metric's protocol (``sampling``).

Channels per resolution r are ``min(channel_base // r, channel_max)``. The defaults are
stylegan2-ada-pytorch's ``paper256`` configuration (channel_base 16384 = fmaps 0.5 x
32768, channel_max 512, z and w 512, 8 mapping layers), the one its low-shot results use;
a CPU-sized model shrinks channel_base, z_dim, w_dim and the mapping depth. In training,
G's output is not clamped (as in StyleGAN2); sampling (eval mode) clamps it to [-1, 1].
Upsampling and downsampling are written as a [1,3,3,1] filter followed (or preceded) by
a plain convolution, not as stylegan2-ada's fused transposed/strided filtered
convolutions: the same parameters and the same operators up to the order of a linear
filter and a convolution at each resolution change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError
from harness.interfaces import Architecture, Discriminator, Generator
from harness.registry import ARCHITECTURES

LRELU_GAIN = math.sqrt(2.0)
MIN_RESOLUTION, MAX_RESOLUTION = 16, 1024


@dataclass
class StyleGAN2Params:
    z_dim: int = field(default=512, metadata={"min": 1, "max": 4096})
    w_dim: int = field(default=512, metadata={"min": 1, "max": 4096})
    # Fully connected layers of the mapping network (StyleGAN2: 8; ADA's low-shot runs: 8 / 2).
    mapping_layers: int = field(default=8, metadata={"min": 1, "max": 16})
    # Learning-rate multiplier of the mapping network (equalised lr).
    mapping_lr: float = field(default=0.01, metadata={"min_exclusive": 0.0, "max": 1.0})
    # Channels at resolution r: min(channel_base // r, channel_max) (paper256: 16384, 512).
    channel_base: int = field(default=16384, metadata={"min": 1, "max": 1 << 20})
    channel_max: int = field(default=512, metadata={"min": 1, "max": 4096})
    # Minibatch standard deviation: group size and feature count (0 = off).
    mbstd_group: int = field(default=4, metadata={"min": 1, "max": 256})
    mbstd_channels: int = field(default=1, metadata={"min": 0, "max": 64})
    # Style mixing probability while training (StyleGAN2: 0.9).
    mixing: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0})
    # Truncation psi when sampling (1 = none); part of every metric's protocol.
    truncation_psi: float = field(default=1.0, metadata={"min_exclusive": 0.0, "max": 1.0})
    # Per-layer noise inputs.
    noise: bool = True


def channels_at(p: StyleGAN2Params, resolution: int) -> int:
    return min(p.channel_base // resolution, p.channel_max)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


# ------------------------------------------------------------------ resampling filters
def _filter(channels: int, like: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0], device=like.device, dtype=like.dtype)
    k = torch.outer(f, f)
    k = k * (gain / k.sum())
    return k.expand(channels, 1, 4, 4)


def upsample2d(x: torch.Tensor) -> torch.Tensor:
    """x2 upsampling with the [1,3,3,1] low-pass filter (zero padding), per channel."""
    return F.conv_transpose2d(x, _filter(x.shape[1], x, 4.0), stride=2, padding=1, groups=x.shape[1])


def downsample2d(x: torch.Tensor) -> torch.Tensor:
    """[1,3,3,1] low-pass filter, then every second pixel, per channel."""
    return F.conv2d(x, _filter(x.shape[1], x), stride=2, padding=1, groups=x.shape[1])


# ------------------------------------------------------------ equalised-lr layers
class EqualLinear(nn.Module):
    """A dense layer with equalised learning rate: weight N(0, 1)/lr_mul, used as
    weight x lr_mul / sqrt(fan_in); bias x lr_mul."""

    def __init__(self, fan_in: int, fan_out: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((fan_out,), float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(fan_in)
        self.bias_gain = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activate else x


class EqualConv2d(nn.Module):
    """A convolution with equalised learning rate; ``down``: [1,3,3,1] downsampling first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True, activate: bool = True,
                 down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.activate, self.down, self.padding = activate, down, kernel // 2

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        if self.down:
            x = downsample2d(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        x = lrelu(x) if self.activate else x
        return x * gain if gain != 1.0 else x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     demodulate: bool = True) -> torch.Tensor:
    """Conv of ``x`` (N, I, H, W) with ``weight`` (O, I, k, k) scaled per sample by
    ``styles`` (N, I); with ``demodulate`` each output map is divided by the L2 norm of
    its modulated weights, so unit-variance inputs give unit-variance outputs.

    Computed as scale inputs -> one shared convolution -> scale outputs, which equals
    convolving with each sample's modulated (and demodulated) weights."""
    x = x * styles[:, :, None, None]
    x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        # sum_{i,k} (w_oik s_ni)^2 = (sum_k w_oik^2) . s_ni^2
        d = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)  # (N, O)
        x = x * d[:, :, None, None]
    return x


class StyleLayer(nn.Module):
    """Modulated 3x3 convolution (``up``: after [1,3,3,1] upsampling), noise, bias, lrelu."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, up: bool, noise: bool):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.up, self.use_noise = up, noise
        if noise:
            self.noise_strength = nn.Parameter(torch.zeros(()))
            self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upsample2d(x)
        x = modulated_conv2d(x, self.weight, self.affine(w))
        if self.use_noise:
            if self.training:
                noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const.to(x.dtype)
            x = x + noise * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to image channels (no demodulation), plus bias."""

    def __init__(self, c_in: int, channels: int, w_dim: int):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(channels, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.weight_gain = 1.0 / math.sqrt(c_in)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return modulated_conv2d(x, self.weight, styles, demodulate=False) + self.bias[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | upsampling conv), conv, toRGB."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, channels: int, noise: bool):
        super().__init__()
        self.first = c_in == 0
        if self.first:
            self.const = nn.Parameter(torch.randn(c_out, resolution, resolution))
        else:
            self.conv0 = StyleLayer(c_in, c_out, w_dim, resolution, up=True, noise=noise)
        self.conv1 = StyleLayer(c_out, c_out, w_dim, resolution, up=False, noise=noise)
        self.torgb = ToRGB(c_out, channels, w_dim)
        self.num_ws = 1 if self.first else 2  # the toRGB shares the next block's first w

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor):
        if self.first:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0])
        else:
            x = self.conv0(x, ws[:, 0])
            x = self.conv1(x, ws[:, 1])
        y = self.torgb(x, ws[:, self.num_ws])
        img = y if img is None else upsample2d(img) + y
        return x, img


class MappingNetwork(nn.Module):
    def __init__(self, p: StyleGAN2Params, num_ws: int):
        super().__init__()
        dims = [p.z_dim] + [p.w_dim] * p.mapping_layers
        self.layers = nn.ModuleList([EqualLinear(a, b, lr_mul=p.mapping_lr, activate=True)
                                     for a, b in zip(dims[:-1], dims[1:])])
        self.num_ws, self.w_avg_beta = num_ws, 0.995
        self.register_buffer("w_avg", torch.zeros(p.w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """w for each latent (N, w_dim); in training mode the running mean of w moves."""
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        return x


class StyleGAN2Generator(Generator):
    def __init__(self, p: StyleGAN2Params, resolution: int, channels: int):
        super().__init__()
        self.p, self.z_dim, self.resolution = p, p.z_dim, resolution
        self.blocks_ = nn.ModuleList()
        c_prev = 0
        for r in _resolutions(resolution):
            c = channels_at(p, r)
            self.blocks_.append(SynthesisBlock(c_prev, c, p.w_dim, r, channels, p.noise))
            c_prev = c
        self.num_ws = sum(b.num_ws for b in self.blocks_) + 1  # + the last toRGB's
        self.mapping = MappingNetwork(p, self.num_ws)

    def styles(self, z: torch.Tensor) -> torch.Tensor:
        """Per-layer w (N, num_ws, w_dim): broadcast, mixed with a second latent's from
        a random layer on (probability ``mixing``, training only), truncated when sampling."""
        w = self.mapping(z)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if self.training and self.p.mixing > 0 and torch.rand(()) < self.p.mixing:
            cutoff = int(torch.randint(1, self.num_ws, ()))
            w2 = self.mapping(torch.randn_like(z))
            ws[:, cutoff:] = w2.unsqueeze(1)
        if not self.training and self.p.truncation_psi != 1.0:
            ws = self.mapping.w_avg.lerp(ws, self.p.truncation_psi)
        return ws

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        x = img = None
        i = 0
        for block in self.blocks_:
            x, img = block(x, img, ws[:, i:i + block.num_ws + 1])
            i += block.num_ws
        return img

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        img = self.synthesis(self.styles(z))
        return img if self.training else img.clamp(-1.0, 1.0)

    def sampling(self) -> Dict[str, Any]:
        return {"truncation_psi": self.p.truncation_psi, "noise": "per-layer fixed" if self.p.noise else "none"}


class MinibatchStd(nn.Module):
    """Appends the std of features over groups of ``group`` samples (averaged over
    channels of each of ``features`` slices and pixels) as extra channels."""

    def __init__(self, group: int, features: int):
        super().__init__()
        self.group, self.features = group, features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = max(d for d in range(1, min(self.group, n) + 1) if n % d == 0)  # groups must divide the batch
        f = self.features
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()  # std over each group
        y = y.mean(dim=(2, 3, 4)).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    """Residual block: (x -> conv3x3 -> down conv3x3) + down 1x1 skip, each x 1/sqrt(2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3)
        self.conv1 = EqualConv2d(c_in, c_out, 3, down=True)
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False, activate=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = math.sqrt(0.5)
        return self.skip(x, gain) + self.conv1(self.conv0(x), gain)


class Epilogue(nn.Module):
    def __init__(self, p: StyleGAN2Params, c: int):
        super().__init__()
        self.mbstd = MinibatchStd(p.mbstd_group, p.mbstd_channels) if p.mbstd_channels else None
        self.conv = EqualConv2d(c + p.mbstd_channels, c, 3)
        self.fc = EqualLinear(c * 16, c, activate=True)
        self.out = EqualLinear(c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        return self.out(self.fc(self.conv(x).flatten(1))).flatten()


class StyleGAN2Discriminator(Discriminator):
    def __init__(self, p: StyleGAN2Params, resolution: int, channels: int):
        super().__init__()
        self.fromrgb = EqualConv2d(channels, channels_at(p, resolution), 1)
        self._blocks = nn.ModuleList([DiscriminatorBlock(channels_at(p, r), channels_at(p, r // 2))
                                      for r in reversed(_resolutions(resolution)[1:])])
        self.epilogue = Epilogue(p, channels_at(p, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fromrgb(x)
        for block in self._blocks:
            x = block(x)
        return self.epilogue(x)

    def blocks(self) -> List[nn.Module]:
        # FreezeD freezes a prefix: fromRGB goes with the first (highest-resolution) block
        return [nn.ModuleList([self.fromrgb, self._blocks[0]]), *self._blocks[1:], self.epilogue]


def _resolutions(resolution: int) -> List[int]:
    return [2 ** k for k in range(2, int(math.log2(resolution)) + 1)]


@ARCHITECTURES.register("stylegan2", params=StyleGAN2Params)
class StyleGAN2(Architecture):
    @classmethod
    def check_config(cls, params: StyleGAN2Params, spec: Any, prefix: str) -> None:
        r = spec.dataset.resolution
        if r < MIN_RESOLUTION or r > MAX_RESOLUTION or r & (r - 1):
            raise ConfigError(f"{prefix}dataset.resolution", r, f"a power of two from {MIN_RESOLUTION} to "
                              f"{MAX_RESOLUTION} (stylegan2 builds 16, 32, 64, 128, 256, ...)")
        if params.channel_base // r < 1:
            raise ConfigError(f"{prefix}architecture.kwargs.channel_base", params.channel_base,
                              f"at least the resolution {r} (channels at r are channel_base // r)")
        if params.mbstd_channels and channels_at(params, 4) % params.mbstd_channels:
            raise ConfigError(f"{prefix}architecture.kwargs.mbstd_channels", params.mbstd_channels,
                              f"a divisor of the 4x4 channel count {channels_at(params, 4)}")

    def make_generator(self) -> Generator:
        return StyleGAN2Generator(self.params, self.resolution, self.channels)

    def make_discriminator(self) -> Discriminator:
        return StyleGAN2Discriminator(self.params, self.resolution, self.channels)
