"""Evaluation samples from a generator: the latents are drawn in ``eval.batch_size``
chunks from one seeded CPU generator (so the samples are the same on every device), and
each chunk is run through G in the largest piece memory allows: on an out-of-memory
error the piece is halved (and remembered) instead of failing the evaluation. Values do
not depend on the piece size: every metric is per image or draws over the whole set.
"""
from __future__ import annotations

import warnings
from typing import Iterator, List, Optional

import torch

from harness.interfaces import Generator


class FittingGenerator:
    """Draws ``n`` samples of ``G`` (eval mode, no grad) from fixed noise ``seed``."""

    def __init__(self, G: Generator, batch_size: int, seed: int, device: torch.device,
                 truncation: Optional[float] = None):
        self.G, self.batch_size, self.seed = G, int(batch_size), int(seed)
        self.device, self.truncation = torch.device(device), truncation
        self.piece = self.batch_size  # the largest piece that fitted so far

    @torch.no_grad()
    def __call__(self, n: int) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        done = 0
        while done < n:
            k = min(self.batch_size, n - done)
            z = self.G.sample_latent(k, gen, self.truncation).to(self.device)
            piece = self.piece
            yield from self._forward(z)
            if self.piece < piece:
                warnings.warn(f"eval.batch_size {self.batch_size} does not fit in memory; generating evaluation "
                              f"samples {self.piece} at a time (same latents, same values)", RuntimeWarning,
                              stacklevel=2)
            done += k

    def _forward(self, z: torch.Tensor) -> List[torch.Tensor]:
        out: List[torch.Tensor] = []
        start = 0
        while start < z.shape[0]:
            piece = z[start:start + self.piece]
            try:
                out.append(self.G(piece))
            except torch.OutOfMemoryError:
                if piece.shape[0] == 1:
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.piece = (piece.shape[0] + 1) // 2
                continue
            start += piece.shape[0]
        return out
