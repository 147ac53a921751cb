"""``shapes``: a procedural dataset of coloured discs, squares and triangles.

Deterministic for a given (count, seed, resolution), needs no download, and has a
real mask channel (the shape's silhouette), so 4-channel code paths can be trained and
tested anywhere. It is a synthetic engine-check set, not a benchmark target.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.data import DatasetSource, ImageSet
from harness.registry import DATASETS


@dataclass
class ShapesParams:
    count: int = field(default=512, metadata={"min": 1, "max": 100000})
    seed: int = field(default=0, metadata={"min": 0, "max": 2 ** 63 - 1})


@DATASETS.register("shapes", params=ShapesParams)
class Shapes(DatasetSource):
    procedural = True
    card = {
        "description": "procedural coloured discs, squares and triangles on gradient backgrounds; mask = shape",
        "licence": "generated (no third-party content)",
        "source": "harness.data.shapes",
        "purpose": "engine checks, tests and the offline demo; not a benchmark target",
        "channels": 4,
    }

    def build(self, resolution: int) -> ImageSet:
        rng = np.random.default_rng(self.params.seed)
        n, ss = self.params.count, 4  # 4x supersampling, then box-downsample: anti-aliased edges
        size = resolution * ss
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        out = np.empty((n, 4, resolution, resolution), dtype=np.uint8)
        for i in range(n):
            kind = rng.integers(3)
            cx, cy = rng.uniform(0.3, 0.7, size=2)
            r = rng.uniform(0.15, 0.3)
            if kind == 0:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            elif kind == 1:
                mask = (np.abs(xx - cx) <= r * 0.8) & (np.abs(yy - cy) <= r * 0.8)
            else:
                mask = (yy >= cy - r) & (yy <= cy + r * 0.7) & (np.abs(xx - cx) <= (yy - (cy - r)) * 0.6)
            fg = rng.uniform(0, 1, size=3).astype(np.float32)
            bg_top, bg_bottom = rng.uniform(0, 1, size=(2, 3)).astype(np.float32)
            bg = bg_top[:, None, None] * (1 - yy) + bg_bottom[:, None, None] * yy
            img = np.where(mask[None], fg[:, None, None], bg)
            rgba = np.concatenate([img, mask[None].astype(np.float32)], axis=0)
            rgba = rgba.reshape(4, resolution, ss, resolution, ss).mean(axis=(2, 4))
            out[i] = np.clip(np.round(rgba * 255), 0, 255).astype(np.uint8)
        info = {**self.card, "count": n, "seed": self.params.seed}
        return ImageSet(out, "shapes", info)
