"""What a trial combines: architectures, losses, augmentations, regularizers, transfer.

Each module registers its variants by name in :mod:`harness.registry`; the registries
import this package's modules on first use.
"""
