"""Instance noise (Sønderby et al. 2017; Arjovsky & Bottou 2017): Gaussian noise
added to everything D sees, reals and fakes, in the D and the G step, after the
augmentation. Its standard deviation anneals linearly from ``sigma`` to 0 over
``anneal_iterations`` (null: over the whole trial), which blurs the two
distributions together early, when their supports barely overlap. It adds no loss
term; ``weight`` must stay 1 (the strength is ``sigma``). The current standard
deviation is reported as ``instance_noise_sigma``.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

from harness.errors import ConfigError
from harness.interfaces import Regularizer
from harness.registry import REGULARIZERS
from harness.spec import regularizer_path


@dataclass
class InstanceNoiseParams:
    sigma: float = field(default=0.1, metadata={"min": 0.0})
    anneal_iterations: Optional[int] = field(default=None, metadata={"min": 1, "max": 10 ** 9})


@REGULARIZERS.register("instance_noise", params=InstanceNoiseParams)
class InstanceNoise(Regularizer):
    @classmethod
    def check_config(cls, params, spec, prefix):
        for r in spec.regularizers:
            if r.name == "instance_noise" and r.weight != 1.0:
                raise ConfigError(
                    f"{regularizer_path(spec, 'instance_noise', prefix)}.weight", r.weight,
                    "1.0 (instance_noise adds no loss term; set its strength with kwargs.sigma)",
                )

    def __init__(self, params, weight=1.0, iterations=1):
        super().__init__(params, weight, iterations)
        self.current = params.sigma

    def sigma_at(self, iteration: int) -> float:
        span = self.params.anneal_iterations or self.iterations
        return self.params.sigma * max(0.0, 1.0 - iteration / span)

    def perturb(self, images: torch.Tensor, iteration: int) -> torch.Tensor:
        self.current = self.sigma_at(iteration)
        if self.current <= 0.0:
            return images
        return images + torch.randn_like(images) * self.current

    def stats(self) -> Dict[str, float]:
        return {"instance_noise_sigma": self.current}
