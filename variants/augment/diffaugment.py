"""DiffAugment (Zhao, Liu, Lin, Zhu & Han 2020), seed study A's augmentation.

The same random, differentiable transformation family is applied to reals and fakes
before D, in the D step and in the G step; fakes keep their graph, so G is trained
through the augmentation and never learns to produce augmented images. ``policy``
combines ``color``, ``translation`` and ``cutout`` (the paper's best for small data
is all three). Magnitudes default to the paper's and are configurable.
"""
from dataclasses import dataclass, field
from typing import Tuple

from harness.errors import ConfigError
from harness.interfaces import Augment
from harness.registry import AUGMENTS
from variants.augment import ops


@dataclass
class DiffAugmentParams:
    policy: str = "color,translation,cutout"
    brightness: float = field(default=0.5, metadata={"min": 0.0})  # + U(-b, b)
    saturation: Tuple[float, float] = (0.0, 2.0)  # x U(lo, hi)
    contrast: Tuple[float, float] = (0.5, 1.5)  # x U(lo, hi)
    translation: float = field(default=0.125, metadata={"min": 0.0, "max": 0.5})  # of the side
    cutout: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # square side / image side


@AUGMENTS.register("diffaugment", params=DiffAugmentParams)
class DiffAugment(Augment):
    @classmethod
    def check_config(cls, params, spec, prefix):
        try:
            ops.parse_policy(params.policy)
        except ValueError:
            raise ConfigError(
                f"{prefix}augment.kwargs.policy", params.policy,
                "a comma-separated, non-repeating subset of " + ", ".join(ops.POLICY_NAMES)
                + " (e.g. color,translation,cutout)",
            ) from None
        for name in ("saturation", "contrast"):
            lo, hi = getattr(params, name)
            if not 0.0 <= lo <= hi:
                raise ConfigError(f"{prefix}augment.kwargs.{name}", [lo, hi], "[low, high] with 0 <= low <= high")

    def __init__(self, params, channels=3):
        super().__init__(params, channels)
        table = ops.diffaugment_ops(params.brightness, tuple(params.saturation), tuple(params.contrast),
                                    params.translation, params.cutout)
        self._ops = [op for name in ops.parse_policy(params.policy) for op in table[name]]

    def forward(self, images):
        for op in self._ops:
            images = op(images)
        return images
