"""Differentiable image operations shared by the augmentation policies and CR.

Images are N x C x H x W in [-1, 1]. Colour operations touch only the first three
channels (a fourth, the alpha mask of seed D's data, passes unchanged); geometric
operations move every channel, so the mask stays on its object. Every random draw
comes from torch's global generator on the images' device, which the trial seeds
and checkpoints.

The DiffAugment operations follow Zhao et al. 2020 ("Differentiable Augmentation
for Data-Efficient GAN Training"): brightness +U(-0.5, 0.5), saturation x U(0, 2),
contrast x U(0.5, 1.5), translation by up to 1/8 of the side with zero padding,
cutout of a square half the side.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F


def split_rgb(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    return x[:, :3], x[:, 3:]


def join(rgb: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    return rgb if rest.shape[1] == 0 else torch.cat([rgb, rest], dim=1)


def _uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(n, 1, 1, 1, device=like.device, dtype=like.dtype) * (high - low) + low


# ------------------------------------------------------------------ colour (RGB only)
def brightness(x: torch.Tensor, strength: float = 0.5) -> torch.Tensor:
    rgb, rest = split_rgb(x)
    return join(rgb + _uniform(x.shape[0], -strength, strength, x), rest)


def saturation(x: torch.Tensor, low: float = 0.0, high: float = 2.0) -> torch.Tensor:
    rgb, rest = split_rgb(x)
    mean = rgb.mean(dim=1, keepdim=True)
    return join((rgb - mean) * _uniform(x.shape[0], low, high, x) + mean, rest)


def contrast(x: torch.Tensor, low: float = 0.5, high: float = 1.5) -> torch.Tensor:
    rgb, rest = split_rgb(x)
    mean = rgb.mean(dim=(1, 2, 3), keepdim=True)
    return join((rgb - mean) * _uniform(x.shape[0], low, high, x) + mean, rest)


# --------------------------------------------------------------- geometric (all channels)
def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by integers in [-ratio*side, ratio*side] on both axes, zero-padded."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if sh == 0 and sw == 0:
        return x
    dev = x.device
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), device=dev)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), device=dev)
    padded = F.pad(x, [sw, sw, sh, sh])
    gy = torch.arange(h, device=dev).view(1, h, 1) + sh - ty
    gx = torch.arange(w, device=dev).view(1, 1, w) + sw - tx
    batch = torch.arange(n, device=dev).view(n, 1, 1)
    # advanced indices on dims 0, 2, 3 around a slice: result is n x h x w x c
    return padded[batch, :, gy, gx].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of side ratio*side at a uniformly random centre (every channel)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if ch == 0 or cw == 0:
        return x
    dev = x.device
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=dev)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=dev)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = (ys >= cy - ch // 2) & (ys < cy - ch // 2 + ch) & (xs >= cx - cw // 2) & (xs < cx - cw // 2 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


def hflip(x: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    if p <= 0:
        return x
    flip = (torch.rand(x.shape[0], device=x.device) < p).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


# --------------------------------------------------------------------- named policies
Op = Callable[[torch.Tensor], torch.Tensor]


def diffaugment_ops(brightness_strength: float = 0.5, saturation_range: Tuple[float, float] = (0.0, 2.0),
                    contrast_range: Tuple[float, float] = (0.5, 1.5), translation_ratio: float = 0.125,
                    cutout_ratio: float = 0.5) -> Dict[str, List[Op]]:
    """DiffAugment's policies by name, each a list of operations applied in order."""
    return {
        "color": [
            lambda x: brightness(x, brightness_strength),
            lambda x: saturation(x, *saturation_range),
            lambda x: contrast(x, *contrast_range),
        ],
        "translation": [lambda x: translation(x, translation_ratio)],
        "cutout": [lambda x: cutout(x, cutout_ratio)],
    }


POLICY_NAMES = ("color", "translation", "cutout")


def parse_policy(policy: str) -> List[str]:
    """``"color,translation"`` -> ``["color", "translation"]``; raises ValueError on unknowns."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [p for p in names if p not in POLICY_NAMES]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(policy)
    return names


TRANSFORM_NAMES = ("flip",) + POLICY_NAMES


def make_transform(spec: str, translation_ratio: float = 0.125) -> Op:
    """A random transform T for consistency regularization, e.g. ``"flip,translation"``
    (CR-GAN's choice: mirror and shift by a few pixels)."""
    names = [p.strip() for p in spec.split(",") if p.strip()]
    bad = [p for p in names if p not in TRANSFORM_NAMES]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(spec)
    table = diffaugment_ops(translation_ratio=translation_ratio)
    table["flip"] = [hflip]
    chain = [op for name in names for op in table[name]]

    def transform(x: torch.Tensor) -> torch.Tensor:
        for op in chain:
            x = op(x)
        return x

    return transform
