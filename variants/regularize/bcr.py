"""Balanced consistency regularization (Zhao, Zhang, Chen, Singh & Zhang 2021,
"Improved Consistency Regularization for GANs").

CR on reals and on (detached) fakes: ``real_weight * E||D(x) - D(T(x))||^2 +
fake_weight * E||D(G(z)) - D(T(G(z)))||^2``; ``weight`` scales the sum (the paper
uses lambda_real = lambda_fake = 10: weight 10 with both relative weights 1).
"""
from dataclasses import dataclass, field

from harness.interfaces import DStepContext
from harness.registry import REGULARIZERS
from variants.regularize.cr import CR, consistency


@dataclass
class BCRParams:
    transform: str = "flip,translation"
    translation: float = field(default=0.125, metadata={"min": 0.0, "max": 0.5})
    real_weight: float = field(default=1.0, metadata={"min": 0.0})
    fake_weight: float = field(default=1.0, metadata={"min": 0.0})


@REGULARIZERS.register("bcr", params=BCRParams)
class BCR(CR):
    name = "bcr"

    def d_term(self, ctx: DStepContext):
        p = self.params
        return (p.real_weight * consistency(ctx.D, ctx.real_aug, ctx.real_logits, self.transform)
                + p.fake_weight * consistency(ctx.D, ctx.fake_aug, ctx.fake_logits, self.transform))
