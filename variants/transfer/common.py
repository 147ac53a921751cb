"""What the transfer methods that start from a source model share."""
from __future__ import annotations

from typing import Any, Optional, Tuple

from torch import nn

from harness import build as harness_build, zoo
from harness.interfaces import Discriminator, Generator, Transfer


def build_on_meta(spec: Any) -> Tuple[Generator, Discriminator]:
    """The trial's G and D without memory or initialisation cost (shapes only)."""
    return harness_build.build_on_meta(spec)


def d_block_count(spec: Any) -> int:
    """How many blocks D has (from the cached meta networks of its shape)."""
    return len(harness_build.meta_networks(spec)[1].blocks())


class FromSource(Transfer):
    """Loads G and D from ``transfer.source`` (checked against its card at validation)."""

    method = ""

    @classmethod
    def check_config(cls, params, spec, prefix):
        zoo.check_source(spec, cls.method, prefix)

    def _entry(self):
        return zoo.resolve(self.source)

    def load_source(self, G: nn.Module, D: nn.Module) -> None:
        g_state, d_state = zoo.load_weights(self._entry())
        G.load_state_dict(g_state)
        D.load_state_dict(d_state)

    def prepare(self, G, D, device):
        self.load_source(G, D)
        return G, D

    def source_fingerprint(self) -> Optional[str]:
        return zoo.fingerprint(self._entry())
