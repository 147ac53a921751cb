"""Gradient penalty on real/fake interpolates (Gulrajani et al. 2017) as a
regularizer, so it combines with any loss (hinge + GP, non-saturating + GP).

Term ``E[(||grad D(x_hat)||_2 - center)^2]``; ``center`` 1 is WGAN-GP's, 0 the
zero-centred variant. ``weight`` is lambda (10 in the paper). With the ``wgan_gp``
loss, whose own penalty is on by default, validation asks for one of the two.
"""
from dataclasses import dataclass, field

from harness.errors import ConfigError
from harness.interfaces import DStepContext, Regularizer
from harness.registry import REGULARIZERS
from variants.losses import gradient_penalty
from harness.spec import regularizer_path


@dataclass
class GPParams:
    center: float = field(default=1.0, metadata={"min": 0.0})


@REGULARIZERS.register("gp", params=GPParams)
class GP(Regularizer):
    @classmethod
    def check_config(cls, params, spec, prefix):
        if spec.loss.name == "wgan_gp" and spec.loss.kwargs.get("gp_weight", 10.0) > 0:
            raise ConfigError(
                f"{regularizer_path(spec, 'gp', prefix)}.name", "gp",
                "no gp regularizer with loss wgan_gp, which has its own penalty "
                "(set loss.kwargs.gp_weight: 0 to use this one instead)",
            )

    def d_term(self, ctx: DStepContext):
        return gradient_penalty(ctx.D, ctx.real_aug, ctx.fake_aug, self.params.center)
