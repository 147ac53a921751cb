"""Path-length regularization (Karras et al. 2020, StyleGAN2), lazy.

For w drawn as G draws them (style mixing included) and images y = g(w), the Jacobian
J_w is pushed towards a fixed length: with Gaussian image-space noise u scaled by
1/sqrt(H W), the term is ``(||J_w^T u||_2 - a)^2``, where the length is the root of the
per-layer squared norms summed over w's dimensions and averaged over layers, and ``a`` is
the running mean of the lengths (decay 0.01 per evaluation, ``running_mean`` below,
checkpointed and averaged over data-parallel workers). ``weight`` is StyleGAN2's pl
weight (2); with ``interval`` k the term is taken every k-th iteration and multiplied by
k (StyleGAN2: 4), on the first 1 / ``batch_shrink`` of the G step's batch (StyleGAN2: 2).

G-side only; it needs a generator that exposes its per-layer latents (``styles``) and
synthesis (``synthesis``): StyleGAN2, trained from scratch or fine-tuned (not under
MineGAN's miner or BSA's adapters, which replace G's input or layers).
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import math

import torch

from harness.errors import ConfigError
from harness.interfaces import GStepContext, Regularizer
from harness.registry import REGULARIZERS

NEEDS = ("styles", "synthesis")


@dataclass
class PathLengthParams:
    interval: int = field(default=4, metadata={"min": 1, "max": 10 ** 6})
    batch_shrink: int = field(default=2, metadata={"min": 1, "max": 1024})
    decay: float = field(default=0.01, metadata={"min_exclusive": 0.0, "max": 1.0})


def path_lengths(G: Any, z: torch.Tensor) -> torch.Tensor:
    """||J_w^T u|| per sample, u ~ N(0, I) / sqrt(H W) in image space."""
    ws = G.styles(z)
    img = G.synthesis(ws)
    noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


@REGULARIZERS.register("pl", params=PathLengthParams)
class PathLength(Regularizer):
    def __init__(self, params: PathLengthParams = None, weight: float = 2.0, iterations: int = 1):
        super().__init__(params, weight, iterations)
        self.running_mean = 0.0

    @classmethod
    def check_config(cls, params, spec, prefix):
        from harness.build import meta_networks
        from harness.spec import regularizer_path

        path = f"{regularizer_path(spec, 'pl', prefix)}.name"
        G, _ = meta_networks(spec)
        if not all(callable(getattr(G, name, None)) for name in NEEDS):
            raise ConfigError(path, "pl", f"a regularizer other than pl for {spec.architecture.name} "
                              "(path-length regularization needs a style-based generator: stylegan2)")
        if spec.transfer.method in ("minegan", "bsa"):
            raise ConfigError(path, "pl", f"a regularizer other than pl with transfer.method "
                              f"{spec.transfer.method} (it replaces G's input or layers; pl needs G's own styles)")

    def g_term(self, ctx: GStepContext) -> Optional[torch.Tensor]:
        k = self.params.interval
        if ctx.iteration % k != 0 or ctx.z is None:
            return None
        n = max(1, ctx.z.shape[0] // self.params.batch_shrink)
        lengths = path_lengths(ctx.G, ctx.z[:n])
        batch_mean = self.workers.mean(lengths.detach().mean())
        a = self.running_mean + self.params.decay * (float(batch_mean) - self.running_mean)
        self.running_mean = a
        return k * (lengths - a).square().mean()

    def stats(self) -> Dict[str, float]:
        return {"pl_mean": float(self.running_mean)}

    def state_dict(self) -> Dict[str, Any]:
        return {"running_mean": float(self.running_mean)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.running_mean = float(state.get("running_mean", 0.0))
