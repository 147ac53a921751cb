"""Latent consistency regularization, zCR (Zhao et al. 2021, "Improved Consistency
Regularization for GANs").

D term (``weight``, lambda_dis = 5 in the paper): ``E||D(G(z)) - D(G(z + dz))||^2``
with ``dz ~ N(0, sigma^2)`` and G fixed, so D is insensitive to small latent moves.
G term (``gen_weight``, lambda_gen = 0.5): ``-E||G(z) - G(z + dz)||^2``, pushing G to
respond to them (against mode collapse). Both D terms see the fakes before
augmentation, so the two outputs differ only by the latent move.
"""
from dataclasses import dataclass, field

import torch

from harness.errors import ConfigError
from harness.interfaces import DStepContext, GStepContext, Regularizer
from harness.registry import REGULARIZERS


@dataclass
class ZCRParams:
    sigma: float = field(default=0.03, metadata={"min_exclusive": 0.0})
    gen_weight: float = field(default=0.5, metadata={"min": 0.0})


@REGULARIZERS.register("zcr", params=ZCRParams)
class ZCR(Regularizer):
    def __init__(self, params, weight=1.0, iterations=1):
        super().__init__(params, weight, iterations)
        self.g_weight = params.gen_weight

    def _perturbed(self, z: torch.Tensor) -> torch.Tensor:
        return z + torch.randn_like(z) * self.params.sigma

    def d_term(self, ctx: DStepContext):
        if ctx.G is None or ctx.z is None:
            raise ConfigError("regularizers", "zcr", "a training loop that passes G and z to regularizers")
        with torch.no_grad():
            moved = ctx.G(self._perturbed(ctx.z))
        return ((ctx.D(moved) - ctx.D(ctx.fake)) ** 2).mean()

    def g_term(self, ctx: GStepContext):
        if ctx.G is None or ctx.z is None:
            raise ConfigError("regularizers", "zcr", "a training loop that passes G and z to regularizers")
        moved = ctx.G(self._perturbed(ctx.z))
        return -((ctx.fake - moved) ** 2).flatten(1).mean(1).mean()
