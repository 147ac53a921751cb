"""Adversarial losses. D's output is a raw logit / critic value per image."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

import torch
import torch.nn.functional as F

from harness.interfaces import DStepContext, Loss
from harness.registry import LOSSES


@LOSSES.register("non_saturating")
class NonSaturating(Loss):
    """Goodfellow et al.'s GAN loss with the non-saturating G objective."""

    def d_loss(self, real_logits, fake_logits):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits):
        return F.softplus(-fake_logits).mean()


@LOSSES.register("hinge")
class Hinge(Loss):
    """Hinge loss (SAGAN/BigGAN)."""

    def d_loss(self, real_logits, fake_logits):
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits):
        return -fake_logits.mean()


@LOSSES.register("least_squares")
class LeastSquares(Loss):
    """LSGAN (Mao et al. 2017) with targets a=0 (fake), b=c=1 (real)."""

    def d_loss(self, real_logits, fake_logits):
        return 0.5 * ((real_logits - 1.0) ** 2).mean() + 0.5 * (fake_logits ** 2).mean()

    def g_loss(self, fake_logits):
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()


@dataclass
class WGANGPParams:
    # lambda of the gradient penalty (10 in Gulrajani et al.).
    gp_weight: float = field(default=10.0, metadata={"min": 0.0})
    # epsilon * E[D(x)^2] keeps the critic's output near 0 (ProGAN's drift term; 0 = off).
    drift: float = field(default=0.0, metadata={"min": 0.0})


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, center: float = 1.0) -> torch.Tensor:
    """E[(||grad D(x_hat)||_2 - center)^2] on random interpolates of real and fake."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = D(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - center) ** 2).mean()


@LOSSES.register("wgan_gp", params=WGANGPParams)
class WGANGP(Loss):
    """Wasserstein loss with gradient penalty (Gulrajani et al. 2017).

    The penalty is taken on interpolates of the (augmented) reals and fakes D saw.
    """

    def d_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits):
        return -fake_logits.mean()

    def d_penalties(self, ctx: DStepContext) -> Dict[str, torch.Tensor]:
        terms = {}
        if self.params.gp_weight > 0:
            terms["gp"] = self.params.gp_weight * gradient_penalty(ctx.D, ctx.real_aug, ctx.fake_aug)
        if self.params.drift > 0:
            terms["drift"] = self.params.drift * (ctx.real_logits ** 2).mean()
        return terms
