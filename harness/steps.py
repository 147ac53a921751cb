"""One D update and one G update, with gradient accumulation.

An optimizer step sees exactly ``batch_size * accumulation`` samples: the latents,
real indices and flips for the whole effective batch are drawn at once from the
trial's sampler, then processed in ``accumulation`` chunks whose losses are scaled by
``1 / accumulation``. Batch 8 x accumulation 4 therefore draws the same samples as
batch 32 x 1 and, for a model without batch coupling (no batch norm), produces the
same gradients while holding only a quarter of the activations.

Under mixed precision only G's and D's forward calls run in ``m.precision.autocast()``;
their outputs are cast back to fp32, so augmentation, losses, penalties and regularizer
terms compute in full precision (:mod:`harness.precision`), and the backward passes go
through ``m.precision.backward`` (the fp16 gradient scaler).

With N data-parallel workers (:mod:`harness.distributed`) every worker draws the whole
``batch_size * workers * accumulation`` and trains on its own slice; each network's
gradients and the returned loss terms are averaged over the workers before the
optimizer step.

These functions know variants only through :mod:`harness.interfaces`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import nn

from harness.data import TrainingData
from harness.distributed import SOLO, Workers
from harness.interfaces import Augment, Discriminator, DStepContext, Generator, GStepContext, Loss, Regularizer
from harness.precision import Precision


@dataclass
class Models:
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    loss: Loss
    augment: Augment
    regularizers: List[Regularizer] = field(default_factory=list)
    regularizer_names: List[str] = field(default_factory=list)
    precision: Precision = field(default_factory=Precision)
    workers: Workers = SOLO  # the trial's data-parallel workers (harness.distributed)


class Sampler:
    """Draws real indices, flips and latents from one seeded CPU generator.

    CPU generation makes the draws identical on every device; its state is part of
    the checkpoint, so a resumed trial draws exactly what an uninterrupted one would.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def reals(self, data: TrainingData, n: int):
        idx = torch.randint(len(data), (n,), generator=self.generator)
        flips = torch.rand(n, generator=self.generator) < 0.5
        return idx, flips

    def latents(self, G: Generator, n: int) -> torch.Tensor:
        return G.sample_latent(n, generator=self.generator)


def _add(stats: Dict[str, torch.Tensor], key: str, value: torch.Tensor, scale: float) -> None:
    value = value.detach() * scale
    stats[key] = stats[key] + value if key in stats else value


def discriminator_step(
    m: Models,
    data: TrainingData,
    sampler: Sampler,
    batch_size: int,
    accumulation: int,
    iteration: int,
    device: torch.device,
) -> Dict[str, torch.Tensor]:
    """One D optimizer step; returns the (chunk-averaged) loss terms, not yet synced."""
    n, own = batch_size * accumulation, m.workers.own(batch_size * accumulation)
    idx, flips = sampler.reals(data, n * m.workers.world)
    z = sampler.latents(m.G, n * m.workers.world)
    idx, flips, z = idx[own], flips[own], z[own]
    m.opt_d.zero_grad(set_to_none=True)
    stats: Dict[str, torch.Tensor] = {}
    scale = 1.0 / accumulation
    for k in range(accumulation):
        sl = slice(k * batch_size, (k + 1) * batch_size)
        real = data.batch(idx[sl], flips[sl])
        z_chunk = z[sl].to(device)
        with torch.no_grad(), m.precision.autocast():
            fake = m.G(z_chunk)
        fake = fake.float()
        real_aug, fake_aug = m.augment.real(real), m.augment.fake(fake)
        for reg in m.regularizers:
            real_aug, fake_aug = reg.perturb(real_aug, iteration), reg.perturb(fake_aug, iteration)
        with m.precision.autocast():
            real_logits, fake_logits = m.D(real_aug), m.D(fake_aug)
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        adversarial = m.loss.d_loss(real_logits, fake_logits)
        total = adversarial
        _add(stats, "d_loss", adversarial, scale)
        ctx = DStepContext(m.D, m.augment, real, fake, real_aug, fake_aug, real_logits, fake_logits, iteration,
                           G=m.G, z=z_chunk)
        for name, term in m.loss.d_penalties(ctx).items():
            total = total + term
            _add(stats, f"d_{name}", term, scale)
        for name, reg in zip(m.regularizer_names, m.regularizers):
            term = reg.d_term(ctx)
            if term is not None:
                total = total + reg.weight * term
                _add(stats, f"reg_{name}", term, scale)
        m.precision.backward(total * scale, "d")
        _add(stats, "d_real", real_logits.mean(), scale)
        _add(stats, "d_fake", fake_logits.mean(), scale)
        _add(stats, "d_total", total, scale)
        m.augment.observe(real_logits.detach())
    m.workers.average_gradients(m.D)
    return m.workers.mean_stats(stats)


def generator_step(
    m: Models,
    sampler: Sampler,
    batch_size: int,
    accumulation: int,
    iteration: int,
    device: torch.device,
) -> Dict[str, torch.Tensor]:
    n = batch_size * accumulation
    z = sampler.latents(m.G, n * m.workers.world)[m.workers.own(n)]
    m.opt_g.zero_grad(set_to_none=True)
    # D's weights get no gradient in the G step (saves D's weight-gradient compute);
    # only parameters that are trainable right now are toggled, so a transfer
    # method's freezing survives.
    d_trainable = [p for p in m.D.parameters() if p.requires_grad]
    for p in d_trainable:
        p.requires_grad_(False)
    stats: Dict[str, torch.Tensor] = {}
    scale = 1.0 / accumulation
    try:
        for k in range(accumulation):
            sl = slice(k * batch_size, (k + 1) * batch_size)
            z_chunk = z[sl].to(device)
            with m.precision.autocast():
                fake = m.G(z_chunk)
            fake = fake.float()
            fake_aug = m.augment.fake(fake)
            for reg in m.regularizers:
                fake_aug = reg.perturb(fake_aug, iteration)
            with m.precision.autocast():
                fake_logits = m.D(fake_aug)
            fake_logits = fake_logits.float()
            adversarial = m.loss.g_loss(fake_logits)
            total = adversarial
            _add(stats, "g_loss", adversarial, scale)
            ctx = GStepContext(m.D, m.augment, fake, fake_aug, fake_logits, iteration, G=m.G, z=z_chunk)
            for name, reg in zip(m.regularizer_names, m.regularizers):
                term = reg.g_term(ctx)
                if term is not None:
                    total = total + reg.g_weight * term
                    _add(stats, f"reg_{name}_g", term, scale)
            m.precision.backward(total * scale, "g")
            _add(stats, "g_total", total, scale)
        # An architecture's own penalty (BigGAN's orthogonal regularisation) is taken
        # once per optimizer step, independent of accumulation.
        arch_term = m.G.regularization_loss()
        if arch_term is not None:
            if arch_term.requires_grad:  # not while a transfer method freezes G's weights
                m.precision.backward(arch_term, "g")
            _add(stats, "g_arch_reg", arch_term, 1.0)
            stats["g_total"] = stats["g_total"] + arch_term.detach()
    finally:
        for p in d_trainable:
            p.requires_grad_(True)
    m.workers.average_gradients(m.G)
    return m.workers.mean_stats(stats)


@torch.no_grad()
def update_ema(G: nn.Module, G_ema: nn.Module, decay: float) -> None:
    """G_ema <- decay * G_ema + (1 - decay) * G for parameters; buffers are copied."""
    ema_params = [p for p in G_ema.parameters()]
    params = [p.detach() for p in G.parameters()]
    if decay <= 0.0:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def all_finite(stats: Dict[str, torch.Tensor]) -> Optional[str]:
    """Name of the first non-finite loss term, or None."""
    if not stats:
        return None
    values = torch.stack([v.reshape(()) for v in stats.values()])
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return None
    return list(stats)[int((~finite).nonzero()[0])]
