"""R1 gradient penalty (Mescheder, Geiger & Nowozin 2018) with lazy evaluation
(Karras et al. 2020, StyleGAN2).

Term ``0.5 * E||grad_x D(x)||^2`` on the reals D saw (after augmentation, as
StyleGAN2-ADA does); ``weight`` is gamma. With ``interval`` k > 1 the term is taken
only on every k-th iteration and multiplied by k, so its average strength is the same
at a k-th of the cost. (StyleGAN2 also rescales Adam's betas by k/(k+1) for lazy
regularization; ganbench does not, so use small intervals when that matters.) The
reported value is the term as added, averaged over the iterations of a report.
"""
from dataclasses import dataclass, field

import torch

from harness.interfaces import DStepContext, Regularizer
from harness.registry import REGULARIZERS


@dataclass
class R1Params:
    interval: int = field(default=1, metadata={"min": 1, "max": 10 ** 6})


def r1_penalty(D, real: torch.Tensor) -> torch.Tensor:
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


@REGULARIZERS.register("r1", params=R1Params)
class R1(Regularizer):
    def d_term(self, ctx: DStepContext):
        k = self.params.interval
        if ctx.iteration % k != 0:
            return None
        return 0.5 * k * r1_penalty(ctx.D, ctx.real_aug)
