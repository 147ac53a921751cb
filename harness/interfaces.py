"""The small interfaces through which the training loop sees variants.

The loop in :mod:`harness.trial` calls only what is defined here; it never branches on
a variant's name. A new augmentation, regularizer, transfer method, loss, architecture
or metric subclasses one of these, lives in one module and registers itself by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from harness.distributed import SOLO, Workers


# --------------------------------------------------------------------------- models
class Generator(nn.Module):
    """Maps latents ``z`` (n x z_dim) to images (n x C x R x R) in [-1, 1]."""

    z_dim: int = 128

    def sample_latent(
        self,
        n: int,
        generator: Optional[torch.Generator] = None,
        truncation: Optional[float] = None,
    ) -> torch.Tensor:
        """Standard normal latents (on CPU, so every device sees the same numbers).

        With ``truncation`` t, entries with |z| > t are redrawn (BigGAN's truncation trick).
        """
        z = torch.randn(n, self.z_dim, generator=generator)
        if truncation is not None:
            outside = z.abs() > truncation
            while outside.any():
                z[outside] = torch.randn(int(outside.sum()), generator=generator)
                outside = z.abs() > truncation
        return z

    def set_progress(self, iteration: int) -> None:
        """Told the iteration before every step (progressive growing uses it)."""

    def regularization_loss(self) -> Optional[torch.Tensor]:
        """An architecture's own penalty added to G's loss (e.g. orthogonal reg.)."""
        return None

    def sampling(self) -> Dict[str, Any]:
        """How this generator samples in eval mode beyond its latents (StyleGAN2's
        truncation psi): recorded in every metric's protocol; {} for most."""
        return {}


class Discriminator(nn.Module):
    """Maps images (n x C x R x R) to one logit per image (shape n)."""

    def set_progress(self, iteration: int) -> None:
        """Told the iteration before every step (progressive growing uses it)."""

    def regularization_loss(self) -> Optional[torch.Tensor]:
        return None

    def blocks(self) -> List[nn.Module]:
        """D's blocks from input (highest resolution) to output; FreezeD freezes a prefix."""
        return [self]


class Architecture:
    """Registered under a name; builds a matching G/D pair for a resolution/channels."""

    def __init__(self, params: Any, resolution: int, channels: int):
        self.params = params
        self.resolution = resolution
        self.channels = channels

    @classmethod
    def check_config(cls, params: Any, spec: Any, prefix: str) -> None:
        """Raise ConfigError for a spec this architecture cannot train (e.g. resolution)."""

    def make_generator(self) -> Generator:
        raise NotImplementedError

    def make_discriminator(self) -> Discriminator:
        raise NotImplementedError


# --------------------------------------------------------------------------- losses
@dataclass
class DStepContext:
    """What one D forward pass saw; given to losses' penalties and regularizers."""

    D: nn.Module
    augment: nn.Module
    real: torch.Tensor  # before augmentation
    fake: torch.Tensor  # detached from G, before augmentation
    real_aug: torch.Tensor
    fake_aug: torch.Tensor
    real_logits: torch.Tensor
    fake_logits: torch.Tensor
    iteration: int
    G: Optional[nn.Module] = None  # for latent-space regularizers (zCR)
    z: Optional[torch.Tensor] = None  # the latents of ``fake`` (on the device)


@dataclass
class GStepContext:
    D: nn.Module
    augment: nn.Module
    fake: torch.Tensor  # attached to G
    fake_aug: torch.Tensor
    fake_logits: torch.Tensor
    iteration: int
    G: Optional[nn.Module] = None
    z: Optional[torch.Tensor] = None


class Loss:
    """An adversarial loss. Penalties it owns (WGAN-GP's) come back from d_penalties."""

    def __init__(self, params: Any = None):
        self.params = params

    @classmethod
    def check_config(cls, params: Any, spec: Any, prefix: str) -> None:
        """Raise ConfigError for a spec this variant cannot run with (checked before any training)."""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_penalties(self, ctx: DStepContext) -> Dict[str, torch.Tensor]:
        """Named, already weighted extra terms of the D loss."""
        return {}


# ---------------------------------------------------------------------- augmentation
class Augment(nn.Module):
    """A differentiable ``images -> images`` map applied before D to reals and fakes.

    The loop calls ``real(images)`` and ``fake(images)``; both default to ``forward``
    (a policy that treats reals and fakes alike, as DiffAugment and ADA must), and a
    real-only policy (``flip``) overrides ``fake`` to pass images through. Fakes keep
    their graph, so G's gradient flows through the augmentation. Its state (ADA's p)
    lives in buffers / extra state so ``state_dict`` checkpoints it; ``observe`` sees D's
    raw outputs on (augmented) reals after each D forward pass; a policy whose state
    follows them reduces its statistics over the trial's data-parallel workers through
    ``self.workers`` (:class:`harness.distributed.Workers`: the identity in a one-process
    trial) so every worker's state agrees. For 4-channel data,
    geometric operations move the mask channel with the image; colour operations leave
    it alone.
    """

    def __init__(self, params: Any = None, channels: int = 3):
        super().__init__()
        self.params = params
        self.channels = channels
        self.workers: Workers = SOLO

    @classmethod
    def check_config(cls, params: Any, spec: Any, prefix: str) -> None:
        """Raise ConfigError for a spec this variant cannot run with (checked before any training)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def real(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)

    def fake(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Feedback from a D step (adaptive augmentation uses it)."""

    def stats(self) -> Dict[str, float]:
        """Numbers worth reporting in the metrics series (e.g. ``{"ada_p": 0.2}``)."""
        return {}


# ---------------------------------------------------------------------- regularizers
class Regularizer:
    """Adds ``weight * term`` to the D (and/or G) loss and reports the unweighted term.

    ``g_weight`` scales the G-side term (it defaults to ``weight``; zCR has two).
    ``perturb`` may change what D sees after augmentation, in the D and the G step
    (instance noise). ``iterations`` is the trial's length, for annealed schedules. A
    regularizer with state that follows batch statistics (LeCam's anchors) reduces them
    over the trial's workers through ``self.workers``, as :class:`Augment` does.
    """

    workers: Workers = SOLO

    def __init__(self, params: Any = None, weight: float = 1.0, iterations: int = 1):
        self.params = params
        self.weight = weight
        self.g_weight = weight
        self.iterations = iterations

    @classmethod
    def check_config(cls, params: Any, spec: Any, prefix: str) -> None:
        """Raise ConfigError for a spec this variant cannot run with (checked before any training)."""

    def d_term(self, ctx: DStepContext) -> Optional[torch.Tensor]:
        return None

    def g_term(self, ctx: GStepContext) -> Optional[torch.Tensor]:
        return None

    def perturb(self, images: torch.Tensor, iteration: int) -> torch.Tensor:
        """What D sees instead of ``images`` (already augmented); default unchanged."""
        return images

    def stats(self) -> Dict[str, float]:
        """Numbers worth reporting in the metrics series (e.g. LeCam's anchors)."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


# -------------------------------------------------------------------------- transfer
class Transfer:
    """Prepares G and D from a source model and says what trains at each iteration.

    ``source`` names a model-zoo entry (or its directory); ``spec`` is the trial's
    TrialSpec. ``prepare`` may wrap G (MineGAN's miner) or add parameters (BSA's
    adapters) before the optimizers are built; ``set_stage`` runs before every
    iteration and freezes what must not train by ``requires_grad`` (frozen parameters
    get no gradient, so Adam leaves them bit-identical).
    """

    def __init__(self, params: Any = None, source: Optional[str] = None, spec: Any = None):
        self.params = params
        self.source = source
        self.spec = spec

    @classmethod
    def check_config(cls, params: Any, spec: Any, prefix: str) -> None:
        """Raise ConfigError for a combination this method cannot run."""

    def prepare(self, G: Generator, D: Discriminator, device: torch.device) -> Tuple[Generator, Discriminator]:
        """Load source weights / wrap modules; return the G and D the loop trains."""
        return G, D

    def set_stage(self, G: Generator, D: Discriminator, iteration: int) -> str:
        """Set ``requires_grad`` for this iteration; return the stage's name."""
        return "train"

    def source_fingerprint(self) -> Optional[str]:
        return None

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


# --------------------------------------------------------------------------- metrics
@dataclass
class EvalContext:
    """What a metric gets: the real set and a way to draw fresh fakes in batches."""

    real: torch.Tensor  # float in [-1, 1], N x C x H x W (RGB view for 4-channel data)
    generate: Callable[[int], Iterator[torch.Tensor]]  # n -> batches of fakes in [-1, 1]
    n_fake: int
    device: torch.device
    seed: int
    dataset_fingerprint: str = ""
    cache: Dict[Any, Any] = field(default_factory=dict)  # per-trial memo (real statistics)
    memo: Dict[Any, Any] = field(default_factory=dict)  # per-evaluation memo (fake features)
    # Feature network backend: auto | torch | onnxruntime (None: $GANBENCH_EVAL_BACKEND, else auto).
    feature_backend: Optional[str] = None
    # The latent truncation the fakes were drawn with (None: none; part of every protocol).
    truncation: Optional[float] = None
    # The generator's own sampling settings (Generator.sampling(); part of every protocol when set).
    sampling: Dict[str, Any] = field(default_factory=dict)
    # Metric options by metric name (eval.metric_options), validated by the metric registry.
    options: Dict[str, Any] = field(default_factory=dict)
    # Reference statistics loaded from a .npz (harness.metrics.reference_stats.load_stats)
    # in place of real images: only Fréchet distances can use them.
    reference_stats: Optional[Dict[str, Any]] = None
    # Whether the caller keeps what metrics leave beside their numbers (a trial's
    # Reporter: the closest generated/training pairs); ``artifacts`` holds them by name,
    # filled per evaluation. Floors and ``ganbench metric`` skip that work.
    want_artifacts: bool = False
    artifacts: Dict[str, Any] = field(default_factory=dict)


class Metric:
    """A quality measure of a generator against a real set; lower or higher is better."""

    higher_is_better: bool = False
    key: str = ""  # the value key of a metric that reports one number (others override keys())
    # For the report's glossary (travels with every evaluation row, so analysis needs no
    # metric registry): what the number measures, and its unit or scale.
    description: str = ""
    scale: str = ""

    def __init__(self, params: Any = None):
        self.params = params  # the metric's options (eval.metric_options.<name>), if it has any

    @classmethod
    def prepare(cls, device: torch.device) -> None:
        """Load and verify what the metric needs (weights) before a trial trains."""

    def keys(self) -> Dict[str, bool]:
        """Every value key ``compute`` reports, with its direction (True: higher is
        better). Declared, so a study's search objective is checked against the keys a
        metric reports, and every row carries each key's direction and metric."""
        return {self.key: bool(self.higher_is_better)}

    def minimum_sizes(self) -> Dict[str, Any]:
        """The fewest images the metric's options need: ``{"n_fake": (count, why),
        "n_real": (count, why)}``; checked before anything is computed."""
        return {"n_fake": (1, "one image"), "n_real": (1, "one image")}

    def compute(self, ctx: EvalContext) -> Dict[str, float]:
        raise NotImplementedError

    def protocol(self) -> Dict[str, Any]:
        """Everything that defines this number (extractor, n, resizer, ...)."""
        return {}

    def info(self, values: List[str]) -> Dict[str, Any]:
        """The glossary entry of this metric and the value keys it produced."""
        doc = " ".join((type(self).__doc__ or "").split())
        text = " ".join(part for part in (doc, self.description) if part)
        return {"description": text, "scale": self.scale, "values": list(values),
                "higher_is_better": bool(self.higher_is_better)}

    def environment(self) -> Dict[str, Any]:
        """How the number was computed where that does not change it beyond float
        rounding (the feature backend, threads): recorded beside the protocol, never part
        of it, so values from either backend compare under one protocol."""
        return {}
