"""Augmentations applied before D, registered in ``harness.registry.AUGMENTS``."""
