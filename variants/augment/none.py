"""No augmentation: D sees reals and fakes as they are."""
from harness.interfaces import Augment
from harness.registry import AUGMENTS


@AUGMENTS.register("none")
class NoAugment(Augment):
    pass
