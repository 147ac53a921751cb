"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018).

ProGAN's multi-scale statistical similarity: for every level of a Laplacian pyramid
(full resolution down to 16 px), random 7x7 patches of real and generated images are
normalised per colour channel, projected on random unit directions, and the 1-D
Wasserstein distances of the projections (sorted samples) are averaged. Reported x1e3
as in ProGAN, averaged over levels. Needs no pretrained network, so it is always
available offline; it measures low-level image statistics (colour, edges, texture),
not semantics -- pair it with a feature-based metric for headline numbers.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from harness.interfaces import EvalContext, Metric
from harness.registry import METRICS

PATCH = 7
PATCHES_PER_IMAGE = 64
DIRECTIONS = 512
REPEATS = 4
MIN_LEVEL = 16

_KERNEL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = (_KERNEL[:, None] * _KERNEL[None, :]).to(x)
    k = k.expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor) -> List[torch.Tensor]:
    levels = []
    while x.shape[-1] >= 2 * MIN_LEVEL:
        small = _blur(x)[..., ::2, ::2]
        up = F.interpolate(small, scale_factor=2, mode="nearest")
        levels.append(x - _blur(up))
        x = small
    levels.append(x)
    return levels


def _positions(n: int, shapes: List[Tuple[int, int]], gen: torch.Generator) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """Top-left corners of every image's patches at every level, drawn for the whole set
    at once (level by level: rows, then columns), so the patches -- and the value -- do
    not depend on the batches the images arrive in (``eval.batch_size``)."""
    out = []
    for h, w in shapes:
        ys = torch.randint(0, h - PATCH + 1, (n, PATCHES_PER_IMAGE), generator=gen)
        xs = torch.randint(0, w - PATCH + 1, (n, PATCHES_PER_IMAGE), generator=gen)
        out.append((ys, xs))
    return out


def _patches(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    n, c = level.shape[:2]
    off = torch.arange(PATCH)
    rows = (ys[..., None] + off)[..., :, None].expand(n, PATCHES_PER_IMAGE, PATCH, PATCH)
    cols = (xs[..., None] + off)[..., None, :].expand(n, PATCHES_PER_IMAGE, PATCH, PATCH)
    img = torch.arange(n)[:, None, None, None].expand_as(rows)
    level = level.cpu().permute(0, 2, 3, 1)  # n h w c
    patches = level[img, rows, cols]  # n x P x 7 x 7 x c
    return patches.reshape(n * PATCHES_PER_IMAGE, PATCH * PATCH, c)


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    mean = desc.mean(dim=(0, 1), keepdim=True)
    std = desc.std(dim=(0, 1), keepdim=True).clamp_min(1e-8)
    return ((desc - mean) / std).flatten(1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, gen: torch.Generator) -> float:
    a, b = a.cpu(), b.cpu()
    m = min(a.shape[0], b.shape[0])
    a = a[torch.randperm(a.shape[0], generator=gen)[:m]]
    b = b[torch.randperm(b.shape[0], generator=gen)[:m]]
    total = 0.0
    for _ in range(REPEATS):
        dirs = torch.randn(a.shape[1], DIRECTIONS, generator=gen)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        # directions x samples, sorted along the contiguous last axis; numpy's SIMD sort
        # is ~15x faster than torch.sort on CPU here.
        pa = np.sort((a @ dirs).t().numpy(), axis=1)
        pb = np.sort((b @ dirs).t().numpy(), axis=1)
        total += float(np.abs(pa - pb).mean())
    return total / REPEATS


def descriptors(images: torch.Tensor, gen: torch.Generator) -> List[torch.Tensor]:
    levels = laplacian_pyramid(images.float())
    positions = _positions(images.shape[0], [tuple(level.shape[2:]) for level in levels], gen)
    return [_patches(level, ys, xs) for level, (ys, xs) in zip(levels, positions)]


@METRICS.register("swd")
class SlicedWasserstein(Metric):
    higher_is_better = False
    key = "swd"
    description = ("Sliced Wasserstein distance between random 7x7 patches of real and generated images at every "
                   "level of a Laplacian pyramid (ProGAN's SWD), averaged over levels: low-level statistics "
                   "(colour, edges, texture), not semantics; 0 = the same patch distributions.")
    scale = "×10³"

    def compute(self, ctx: EvalContext) -> Dict[str, float]:
        # Separate generators for real patches, fake patches and projections: the value
        # does not depend on whether the real descriptors came from the cache.
        key = ("swd_real", ctx.dataset_fingerprint, ctx.seed)
        if key not in ctx.cache:
            real_gen = torch.Generator().manual_seed(ctx.seed)
            ctx.cache[key] = [_normalise(d) for d in descriptors(ctx.real, real_gen)]
        real = ctx.cache[key]
        fake_gen = torch.Generator().manual_seed(ctx.seed + 1)
        fake_desc: List[List[torch.Tensor]] = []
        positions: List[Tuple[torch.Tensor, torch.Tensor]] = []
        start = 0
        for batch in ctx.generate(ctx.n_fake):
            levels = laplacian_pyramid(batch[:, :3].float())
            if not positions:
                positions = _positions(ctx.n_fake, [tuple(level.shape[2:]) for level in levels], fake_gen)
            stop = start + batch.shape[0]
            fake_desc.append([_patches(level, ys[start:stop], xs[start:stop])
                              for level, (ys, xs) in zip(levels, positions)])
            start = stop
        fake = [_normalise(torch.cat(parts, 0)) for parts in zip(*fake_desc)]
        proj_gen = torch.Generator().manual_seed(ctx.seed + 2)
        distances = [sliced_wasserstein(r, f, proj_gen) * 1e3 for r, f in zip(real, fake)]
        return {"swd": sum(distances) / len(distances)}

    def protocol(self) -> Dict[str, object]:
        return {"patch": PATCH, "patches_per_image": PATCHES_PER_IMAGE, "directions": DIRECTIONS,
                "repeats": REPEATS, "min_level": MIN_LEVEL, "space": "laplacian pyramid, [-1,1] RGB",
                # patch corners drawn for the whole generated set, not per batch (values
                # before this field depended on eval.batch_size when n_fake exceeded it)
                "patch_positions": "whole set"}
