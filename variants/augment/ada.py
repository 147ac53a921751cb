"""Adaptive discriminator augmentation (Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data").

A differentiable pipeline applied to reals and fakes before D. Each operation is
applied to each image independently with probability ``p`` (the rotations with
``1 - sqrt(1 - p)`` each, so that some rotation happens with probability p):

* blit: x-flip, 90-degree rotations, integer translation (up to 1/8 of the side);
* geometric: isotropic scaling (lognormal, std 0.2 log2), arbitrary rotation,
  anisotropic scaling, fractional translation (normal, std 1/8 of the side);
* colour: brightness (normal, std 0.2), contrast (lognormal, std 0.5 log2), hue
  rotation about the luma axis, saturation (lognormal, std 1 log2).

All geometric operations are composed into one affine matrix per image and applied
in a single bilinear resampling with reflection padding (blit-only transforms hit
pixel centres exactly, so they are lossless); all colour operations are composed
into one 4 x 4 matrix acting on RGB. The mask of 4-channel data moves with the
geometry and is left out of the colour transform.

Adaptation: after every ``interval`` D forward passes on reals, the overfitting
heuristic r_t = E[sign(D(real))] over those passes moves p by
``sign(r_t - target) * images / (speed_kimg * 1000)`` (so p can traverse 0..1 in
``speed_kimg`` thousand real images), clamped to [0, 1]. p, the running sums and the
pass counter are buffers / extra state, so a resumed trial continues with exactly the
p it stopped with; p and the last r_t appear in every report row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict

import torch
import torch.nn.functional as F

from harness.interfaces import Augment
from harness.registry import AUGMENTS


@dataclass
class ADAParams:
    # Initial probability; with adaptive false it stays fixed.
    p: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    adaptive: bool = True
    target: float = field(default=0.6, metadata={"min": 0.0, "max": 1.0})
    interval: int = field(default=4, metadata={"min": 1, "max": 10 ** 6})  # D passes between adjustments
    speed_kimg: float = field(default=500.0, metadata={"min_exclusive": 0.0})
    # Which operations take part (ADA's "bgc" pipeline is all of them).
    xflip: bool = True
    rotate90: bool = True
    xint: bool = True
    scale: bool = True
    rotate: bool = True
    aniso: bool = True
    xfrac: bool = True
    brightness: bool = True
    contrast: bool = True
    hue: bool = True
    saturation: bool = True
    # Magnitudes (ADA's defaults).
    xint_max: float = field(default=0.125, metadata={"min": 0.0, "max": 0.5})
    scale_std: float = field(default=0.2, metadata={"min": 0.0})
    rotate_max: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})  # x pi
    aniso_std: float = field(default=0.2, metadata={"min": 0.0})
    xfrac_std: float = field(default=0.125, metadata={"min": 0.0})
    brightness_std: float = field(default=0.2, metadata={"min": 0.0})
    contrast_std: float = field(default=0.5, metadata={"min": 0.0})
    hue_max: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})  # x pi
    saturation_std: float = field(default=1.0, metadata={"min": 0.0})


def _eye(n: int, size: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(size, device=like.device, dtype=like.dtype).expand(n, size, size).clone()


def _translate2(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(tx.shape[0], 3, tx)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale2(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(sx.shape[0], 3, sx)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2(theta: torch.Tensor) -> torch.Tensor:
    m = _eye(theta.shape[0], 3, theta)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


class ADAPipeline(torch.nn.Module):
    """The augmentation itself at probability ``p`` (no adaptation)."""

    def __init__(self, params: ADAParams):
        super().__init__()
        self.params = params

    def _gate(self, n: int, p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(n, device=like.device, dtype=like.dtype) < p

    def geometric(self, n: int, p: torch.Tensor, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """Per-image 3x3 matrices mapping output to input coordinates (normalised [-1, 1])."""
        a = self.params
        G = _eye(n, 3, like)
        one = torch.ones(n, device=like.device, dtype=like.dtype)

        def randn():
            return torch.randn(n, device=like.device, dtype=like.dtype)

        def rand():
            return torch.rand(n, device=like.device, dtype=like.dtype)

        def where(gate, value, default):
            return torch.where(gate, value, default)

        if a.xflip:
            flip = (torch.randint(0, 2, (n,), device=like.device) * 2 - 1).to(like.dtype)
            G = G @ _scale2(where(self._gate(n, p, like), flip, one), one)
        if a.rotate90:
            k = torch.randint(0, 4, (n,), device=like.device).to(like.dtype)
            G = G @ _rotate2(where(self._gate(n, p, like), k * (math.pi / 2), one * 0))
        if a.xint and a.xint_max > 0:
            gate = self._gate(n, p, like)
            # whole pixels: normalised coordinates span 2 over the side
            tx = torch.round((rand() * 2 - 1) * a.xint_max * w) * (2.0 / w)
            ty = torch.round((rand() * 2 - 1) * a.xint_max * h) * (2.0 / h)
            G = G @ _translate2(where(gate, tx, one * 0), where(gate, ty, one * 0))
        if a.scale:
            s = torch.exp2(randn() * a.scale_std)
            s = where(self._gate(n, p, like), s, one)
            G = G @ _scale2(s, s)
        p_rot = 1 - torch.sqrt((1 - p).clamp(min=0))
        if a.rotate:
            theta = (rand() * 2 - 1) * math.pi * a.rotate_max
            G = G @ _rotate2(where(self._gate(n, p_rot, like), theta, one * 0))
        if a.aniso:
            s = torch.exp2(randn() * a.aniso_std)
            s = where(self._gate(n, p, like), s, one)
            G = G @ _scale2(s, 1 / s)
        if a.rotate:
            theta = (rand() * 2 - 1) * math.pi * a.rotate_max
            G = G @ _rotate2(where(self._gate(n, p_rot, like), theta, one * 0))
        if a.xfrac:
            gate = self._gate(n, p, like)
            tx, ty = randn() * a.xfrac_std * 2, randn() * a.xfrac_std * 2
            G = G @ _translate2(where(gate, tx, one * 0), where(gate, ty, one * 0))
        return G

    def colour(self, n: int, p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Per-image 4x4 matrices acting on homogeneous RGB."""
        a = self.params
        C = _eye(n, 4, like)
        one = torch.ones(n, device=like.device, dtype=like.dtype)
        v = torch.full((3,), 1 / math.sqrt(3), device=like.device, dtype=like.dtype)  # luma axis
        vv = torch.outer(v, v)
        if a.brightness:
            b = torch.randn(n, device=like.device, dtype=like.dtype) * a.brightness_std
            b = torch.where(self._gate(n, p, like), b, one * 0)
            m = _eye(n, 4, like)
            m[:, :3, 3] = b.unsqueeze(1)
            C = m @ C
        if a.contrast:
            c = torch.exp2(torch.randn(n, device=like.device, dtype=like.dtype) * a.contrast_std)
            c = torch.where(self._gate(n, p, like), c, one)
            m = _eye(n, 4, like)
            m[:, :3, :3] = m[:, :3, :3] * c.view(n, 1, 1)
            C = m @ C
        if a.hue:
            theta = (torch.rand(n, device=like.device, dtype=like.dtype) * 2 - 1) * math.pi * a.hue_max
            theta = torch.where(self._gate(n, p, like), theta, one * 0)
            cos, sin = torch.cos(theta).view(n, 1, 1), torch.sin(theta).view(n, 1, 1)
            cross = torch.tensor([[0.0, -1, 1], [1, 0, -1], [-1, 1, 0]], device=like.device,
                                 dtype=like.dtype) / math.sqrt(3)  # [v]_x for v = (1,1,1)/sqrt(3)
            eye3 = torch.eye(3, device=like.device, dtype=like.dtype)
            rot = cos * eye3 + sin * cross + (1 - cos) * vv  # Rodrigues
            m = _eye(n, 4, like)
            m[:, :3, :3] = rot
            C = m @ C
        if a.saturation:
            s = torch.exp2(torch.randn(n, device=like.device, dtype=like.dtype) * a.saturation_std)
            s = torch.where(self._gate(n, p, like), s, one)
            eye3 = torch.eye(3, device=like.device, dtype=like.dtype)
            m = _eye(n, 4, like)
            m[:, :3, :3] = vv + (eye3 - vv) * s.view(n, 1, 1)
            C = m @ C
        return C

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = p.to(device=x.device, dtype=x.dtype)
        a = self.params
        if any((a.xflip, a.rotate90, a.xint, a.scale, a.rotate, a.aniso, a.xfrac)):
            Gm = self.geometric(n, p, h, w, x)
            grid = F.affine_grid(Gm[:, :2, :], [n, c, h, w], align_corners=False)
            moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            # images that drew no geometric operation stay bit-exact
            untouched = (Gm == _eye(n, 3, Gm)).flatten(1).all(1).view(n, 1, 1, 1)
            x = torch.where(untouched, x, moved)
        if any((a.brightness, a.contrast, a.hue, a.saturation)):
            C = self.colour(n, p, x)
            rgb, rest = x[:, :3], x[:, 3:]
            coloured = torch.einsum("nij,njhw->nihw", C[:, :3, :3], rgb) + C[:, :3, 3].view(n, 3, 1, 1)
            untouched = (C == _eye(n, 4, C)).flatten(1).all(1).view(n, 1, 1, 1)
            rgb = torch.where(untouched, rgb, coloured)
            x = rgb if rest.shape[1] == 0 else torch.cat([rgb, rest], dim=1)
        return x


@AUGMENTS.register("ada", params=ADAParams)
class ADA(Augment):
    def __init__(self, params: ADAParams, channels: int = 3):
        super().__init__(params, channels)
        self.pipeline = ADAPipeline(params)
        self.register_buffer("p", torch.tensor(float(params.p), dtype=torch.float32))
        self.register_buffer("rt", torch.tensor(float("nan"), dtype=torch.float32))
        self.register_buffer("sign_sum", torch.zeros((), dtype=torch.float32))
        self.register_buffer("sign_count", torch.zeros((), dtype=torch.float32))
        self.passes = 0  # D passes since the last adjustment (extra state)
        self._p_host = float(params.p)  # host copy: no device sync per forward pass

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._p_host <= 0.0:
            return images
        return self.pipeline(images, self.p)

    @torch.no_grad()
    def observe(self, real_logits: torch.Tensor) -> None:
        if not self.params.adaptive:
            return
        self.sign_sum += torch.sign(real_logits.detach()).sum().to(self.sign_sum)
        self.sign_count += real_logits.numel()
        self.passes += 1
        if self.passes < self.params.interval:
            return
        # every worker's signs (their sum over the trial's workers: one p for all)
        sign_sum, sign_count = self.workers.sum(torch.stack([self.sign_sum, self.sign_count]))
        self.rt.copy_(sign_sum / sign_count)
        step = sign_count / (self.params.speed_kimg * 1000.0)
        self.p.add_(torch.sign(self.rt - self.params.target) * step).clamp_(0.0, 1.0)
        self.sign_sum.zero_()
        self.sign_count.zero_()
        self.passes = 0
        self._p_host = float(self.p)

    def stats(self) -> Dict[str, float]:
        out = {"ada_p": float(self.p)}
        if not math.isnan(float(self.rt)):
            out["ada_rt"] = float(self.rt)
        return out

    def get_extra_state(self) -> Any:
        return {"passes": self.passes, "p": self._p_host}

    def set_extra_state(self, state: Any) -> None:
        self.passes = int(state["passes"])
        self._p_host = float(state["p"])
