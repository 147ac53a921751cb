"""Batch statistics adaptation (Noguchi & Harada 2019, "Image Generation from Small
Datasets via Batch Statistics Adaptation"), in adversarial form.

G starts from the source model and is frozen except for a new per-channel scale and
shift after each of its batch-norm layers (initialised to 1 and 0, so training starts
at the source generator) and, with ``embeddings`` (default), its class/latent
embedding tables (BigGAN's shared embedding). D starts from the source and trains
fully. The paper trains the adapted statistics with a perceptual + L1 reconstruction
loss against the training images instead of a discriminator; ganbench keeps the
trial's adversarial loss so that BSA compares with the other methods under one loop.
Architectures whose G has no batch norm (dcgan with norm none, progressive) are
refused at validation.
"""
from dataclasses import dataclass

import torch
from torch import nn

from harness.errors import ConfigError
from harness.registry import TRANSFERS
from variants.transfer.common import FromSource, build_on_meta


@dataclass
class BSAParams:
    embeddings: bool = True


class ScaleShift(nn.Module):
    """y = x * scale + shift per channel: the adapted batch statistics."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)


def _norm_layers(G: nn.Module):
    return [(name, m) for name, m in G.named_modules() if isinstance(m, nn.BatchNorm2d)]


@TRANSFERS.register("bsa", params=BSAParams)
class BSA(FromSource):
    method = "bsa"

    @classmethod
    def check_config(cls, params, spec, prefix):
        G, _ = build_on_meta(spec)
        if not _norm_layers(G):
            raise ConfigError(f"{prefix}transfer.method", "bsa",
                              f"a method other than bsa for this generator ({spec.architecture.name} with these "
                              "kwargs has no batch norm to adapt)")
        super().check_config(params, spec, prefix)

    def prepare(self, G, D, device):
        self.load_source(G, D)
        for name, bn in _norm_layers(G):
            parent_name, _, child = name.rpartition(".")
            parent = G.get_submodule(parent_name) if parent_name else G
            parent._modules[child] = nn.Sequential(bn, ScaleShift(bn.num_features).to(device))
        self._freeze(G)
        return G, D

    def adapted_parameters(self, G: nn.Module):
        params = [p for m in G.modules() if isinstance(m, ScaleShift) for p in m.parameters()]
        if self.params.embeddings:
            params += [p for m in G.modules() if isinstance(m, nn.Embedding) for p in m.parameters()]
        return params

    def _freeze(self, G: nn.Module) -> None:
        G.requires_grad_(False)
        for p in self.adapted_parameters(G):
            p.requires_grad_(True)

    def set_stage(self, G, D, iteration):
        self._freeze(G)
        return "bsa"
