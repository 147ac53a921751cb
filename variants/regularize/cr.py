"""Consistency regularization (Zhang, Zhang, Odena & Lee 2020, "Consistency
Regularization for Generative Adversarial Networks"), seed study A's RC.

D-loss term ``E ||D(x) - D(T(x))||^2`` on the reals D saw (after the augmentation
policy), with T a random semantics-preserving transform (default: mirror and shift
by up to 1/8 of the side, CR-GAN's choice). Both D outputs carry gradient. The
reported value is the unweighted mean squared difference; ``weight`` is lambda
(10 in the paper).
"""
from dataclasses import dataclass, field

import torch

from harness.errors import ConfigError
from harness.interfaces import DStepContext, Regularizer
from harness.registry import REGULARIZERS
from harness.spec import regularizer_path
from variants.augment import ops


@dataclass
class CRParams:
    # Comma-separated operations of T: flip, translation, color, cutout.
    transform: str = "flip,translation"
    translation: float = field(default=0.125, metadata={"min": 0.0, "max": 0.5})


def consistency(D, x: torch.Tensor, logits: torch.Tensor, transform) -> torch.Tensor:
    return ((D(transform(x)) - logits) ** 2).mean()


@REGULARIZERS.register("cr", params=CRParams)
class CR(Regularizer):
    name = "cr"

    @classmethod
    def check_config(cls, params, spec, prefix):
        try:
            ops.make_transform(params.transform, params.translation)
        except ValueError:
            raise ConfigError(
                f"{regularizer_path(spec, cls.name, prefix)}.kwargs.transform", params.transform,
                "a comma-separated, non-repeating subset of " + ", ".join(ops.TRANSFORM_NAMES),
            ) from None

    def __init__(self, params, weight=1.0, iterations=1):
        super().__init__(params, weight, iterations)
        self.transform = ops.make_transform(params.transform, params.translation)

    def d_term(self, ctx: DStepContext):
        return consistency(ctx.D, ctx.real_aug, ctx.real_logits, self.transform)
