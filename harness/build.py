"""Building a trial's parts from its TrialSpec — shared by the trial loop, ``ganbench
describe`` and ``ganbench metric`` (a generator rebuilt from a checkpoint), so a model is
built one way only. Variants come from their registries by name; nothing here branches
on one.
"""
from __future__ import annotations

import copy
import functools
import json
import random
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np
import torch

from harness.errors import ConfigError
from harness.registry import ARCHITECTURES, AUGMENTS, LOSSES, REGULARIZERS, TRANSFERS
from harness.precision import Precision
from harness.spec import TrialSpec
from harness.steps import Models


def resolve_device(spec: TrialSpec) -> torch.device:
    device = torch.device(spec.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", spec.device, "cpu (CUDA is not available on this machine)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("device", spec.device, f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", spec.device, "cpu (MPS is not available on this machine)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_architecture(spec: TrialSpec) -> Any:
    """The spec's architecture (a G/D factory) at its resolution and channel count."""
    return ARCHITECTURES.build(spec.architecture.name, spec.architecture.kwargs, "architecture.name",
                               resolution=spec.dataset.resolution, channels=spec.dataset.channels)


def build_networks(spec: TrialSpec) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """A fresh (G, D) of the spec's architecture."""
    arch = build_architecture(spec)
    return arch.make_generator(), arch.make_discriminator()


def build_on_meta(spec: Any) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """The spec's (G, D) without memory or initialisation cost: parameter shapes only."""
    with torch.device("meta"):
        return build_networks(spec)


def meta_networks(spec: Any) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """:func:`build_on_meta`, cached per architecture, kwargs, resolution and channels (a
    study validates many trials of one shape, and even on the meta device a large D costs
    seconds: spectral norm initialises itself). Shared: read them, never modify them."""
    return _meta_networks(spec.architecture.name, json.dumps(spec.architecture.kwargs, sort_keys=True, default=str),
                          spec.dataset.resolution, spec.dataset.channels)


@functools.lru_cache(maxsize=64)
def _meta_networks(arch: str, kwargs_json: str, resolution: int, channels: int):
    from types import SimpleNamespace

    spec = SimpleNamespace(architecture=SimpleNamespace(name=arch, kwargs=json.loads(kwargs_json)),
                           dataset=SimpleNamespace(resolution=resolution, channels=channels))
    return build_on_meta(spec)


def model_info(spec: TrialSpec, G: torch.nn.Module, D: torch.nn.Module) -> Dict[str, Any]:
    """Sizes and batch arithmetic of a trial (``ganbench describe``, a record's env.json)."""
    o = spec.optimization
    return {
        "G_parameters": count_parameters(G),
        "D_parameters": count_parameters(D),
        "z_dim": G.z_dim,
        "effective_batch_d": o.effective_batch_d,
        "effective_batch_g": o.effective_batch_g,
        "real_samples_per_iteration": o.effective_batch_d * o.d_steps,
    }


@dataclass
class BuiltTrial:
    """Everything the loop trains: the networks, optimizers and variants, and the transfer
    method (which prepares the networks and says what trains in which stage)."""

    models: Models
    transfer: Any


def build_models(spec: TrialSpec, device: torch.device) -> BuiltTrial:
    G, D = build_networks(spec)
    transfer = TRANSFERS.build(spec.transfer.method, spec.transfer.kwargs, "transfer.method",
                               source=spec.transfer.source, spec=spec)
    G, D = transfer.prepare(G.to(device), D.to(device), device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    o = spec.optimization
    opt_g = torch.optim.Adam(G.parameters(), lr=o.lr_g, betas=o.betas, eps=o.eps)
    opt_d = torch.optim.Adam(D.parameters(), lr=o.lr_d, betas=o.betas, eps=o.eps)
    augment = AUGMENTS.build(spec.augment.policy, spec.augment.kwargs, "augment.policy",
                             channels=spec.dataset.channels).to(device)
    regs = [REGULARIZERS.build(r.name, r.kwargs, f"regularizers[{i}].name", weight=r.weight, iterations=o.iteration_limit)
            for i, r in enumerate(spec.regularizers)]
    loss = LOSSES.build(spec.loss.name, spec.loss.kwargs, "loss.name")
    models = Models(G, D, G_ema, opt_g, opt_d, loss, augment, regs, [r.name for r in spec.regularizers],
                    Precision(spec.performance.precision, device.type))
    return BuiltTrial(models, transfer)
