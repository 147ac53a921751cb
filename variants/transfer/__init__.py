"""Transfer methods preparing G/D from a source model (``harness.registry.TRANSFERS``)."""
