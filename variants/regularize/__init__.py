"""Regularizers adding weighted terms to D's/G's loss (``harness.registry.REGULARIZERS``)."""
