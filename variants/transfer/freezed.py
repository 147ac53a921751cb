"""FreezeD (Mo, Cho & Shin 2020): fine-tune from a source model with the lowest
``layers`` blocks of D (those next to the image) frozen; G and the rest of D train.

The blocks are the architecture's ``Discriminator.blocks()``, input side first; the
last one is D's output layer, which always trains. Frozen parameters get no gradient,
so they stay bit-identical to the source.
"""
from dataclasses import dataclass, field

from harness.errors import ConfigError
from harness.registry import TRANSFERS
from variants.transfer.common import FromSource, d_block_count


@dataclass
class FreezeDParams:
    layers: int = field(default=2, metadata={"min": 1, "max": 1000})


@TRANSFERS.register("freezed", params=FreezeDParams)
class FreezeD(FromSource):
    method = "freezed"

    @classmethod
    def check_config(cls, params, spec, prefix):
        n = d_block_count(spec)
        if params.layers >= n:
            raise ConfigError(f"{prefix}transfer.kwargs.layers", params.layers,
                              f"1..{n - 1} ({spec.architecture.name}'s D has {n} blocks here, the last "
                              "being its output layer)")
        super().check_config(params, spec, prefix)

    def set_stage(self, G, D, iteration):
        for block in D.blocks()[: self.params.layers]:
            block.requires_grad_(False)
        return "freezed"
