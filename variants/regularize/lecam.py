"""LeCam regularization (Tseng, Jiang, Liu, Yang & Yang 2021, "Regularizing
Generative Adversarial Networks under Limited Data").

Two anchors, exponential moving averages of D's mean output on reals (alpha_R) and
on fakes (alpha_F), and the D-loss term
``E[relu(D(x) - alpha_F)^2] + E[relu(alpha_R - D(G(z)))^2]`` (the authors' code's
one-sided form), which bounds how far D's outputs on reals and fakes drift apart.
The anchors update after every D pass (``decay`` 0.99); the term is added from
iteration ``start``. The anchors are tensors in the regularizer's state, so a
resumed trial continues with exactly the anchors it stopped with; they appear in the
report rows as ``lecam_real`` / ``lecam_fake``. ``weight`` is lambda (0.3 in the
paper's low-data settings, 0.01 on full CIFAR).
"""
from dataclasses import dataclass, field
from typing import Any, Dict

import torch
import torch.nn.functional as F

from harness.interfaces import DStepContext, Regularizer
from harness.registry import REGULARIZERS


@dataclass
class LeCamParams:
    decay: float = field(default=0.99, metadata={"min": 0.0, "max": 1.0})
    start: int = field(default=0, metadata={"min": 0, "max": 10 ** 9})


@REGULARIZERS.register("lecam", params=LeCamParams)
class LeCam(Regularizer):
    def __init__(self, params, weight=1.0, iterations=1):
        super().__init__(params, weight, iterations)
        self.anchor_real = torch.zeros((), dtype=torch.float32)
        self.anchor_fake = torch.zeros((), dtype=torch.float32)

    def d_term(self, ctx: DStepContext):
        real, fake = ctx.real_logits, ctx.fake_logits
        self.anchor_real = self.anchor_real.to(real.device)
        self.anchor_fake = self.anchor_fake.to(real.device)
        a_real, a_fake = self.anchor_real.to(real.dtype), self.anchor_fake.to(real.dtype)
        term = F.relu(real - a_fake).pow(2).mean() + F.relu(a_real - fake).pow(2).mean()
        d = self.params.decay
        with torch.no_grad():
            # D's mean outputs over every worker's batch (one pair of anchors for all)
            means = self.workers.mean(torch.stack([real.detach().mean(), fake.detach().mean()]).to(torch.float32))
            self.anchor_real = d * self.anchor_real + (1 - d) * means[0]
            self.anchor_fake = d * self.anchor_fake + (1 - d) * means[1]
        if ctx.iteration < self.params.start:
            return None
        return term

    def stats(self) -> Dict[str, float]:
        return {"lecam_real": float(self.anchor_real), "lecam_fake": float(self.anchor_fake)}

    def state_dict(self) -> Dict[str, Any]:
        return {"anchor_real": self.anchor_real.detach().cpu().clone(),
                "anchor_fake": self.anchor_fake.detach().cpu().clone()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.anchor_real = state["anchor_real"].to(torch.float32).clone()
        self.anchor_fake = state["anchor_fake"].to(torch.float32).clone()
