"""Real-only horizontal flip at D's input (BigGAN-PyTorch's default augmentation).

The same thing as ``dataset.hflip`` expressed as an augmentation policy, so that an
ablation can list it beside ``none``/``diffaugment``/``ada``; the two together would
flip reals twice, which validation refuses. Fakes pass unchanged.
"""
from dataclasses import dataclass, field

from harness.errors import ConfigError
from harness.interfaces import Augment
from harness.registry import AUGMENTS
from variants.augment import ops


@dataclass
class FlipParams:
    # Probability that a real image is mirrored.
    p: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})


@AUGMENTS.register("flip", params=FlipParams)
class Flip(Augment):
    @classmethod
    def check_config(cls, params, spec, prefix):
        if spec.dataset.hflip:
            raise ConfigError(
                f"{prefix}augment.policy", "flip",
                "another policy while dataset.hflip is true (both flip the reals; keep one of them)",
            )

    def real(self, images):
        return ops.hflip(images, self.params.p)

    def fake(self, images):
        return images

    def forward(self, images):
        return self.real(images)
