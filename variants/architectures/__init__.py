"""GAN architectures, one module each, registered in ``harness.registry.ARCHITECTURES``."""
