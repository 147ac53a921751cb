"""TrialSpec: the one typed description of a GAN training run.

Every default lives here; a YAML file only overrides. Unknown keys and invalid values
raise :class:`~harness.errors.ConfigError` naming the dotted path (for example
``optimization.accumulation.d``), the bad value and what is allowed. Variant keyword
arguments (``architecture.kwargs`` ...) are validated by each variant's own params
dataclass through its registry, so a misspelled ``widht`` fails before training.
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import yaml

from harness import registry
from harness.clocks import CLOCKS, COMPUTE_DEVICES
from harness.errors import ConfigError
from harness.precision import PRECISION_DEVICES, PRECISIONS
from harness.tracking.spec import TrackingSpec
from harness.validation import INT_LIMIT, build_dataclass, to_plain

# Caps on counts and sizes that are absurd on any machine (a laptop validates studies
# meant for a GPU cluster, so none depends on this machine): they turn a typo such as
# ``batch_size: 1.0e+12`` into an error now instead of a failed allocation later.
MAX_COUNT = 10 ** 9        # iterations, intervals, images
MAX_BATCH = 65536          # images in one forward pass
MAX_ACCUMULATION = 4096


def _names(reg: registry.Registry):
    return reg.names


@dataclass
class DatasetSpec:
    # A registered dataset name, or a path to an HDF5 file (``imgs`` N x C x H x W uint8).
    name: str = "shapes"
    # Image side in pixels: the built dataset's resolution and the models' output size.
    resolution: int = field(default=32, metadata={"min": 4, "max": 1024})
    # 3 = RGB; 4 = RGB plus an object mask as a 4th channel (seed D).
    channels: int = field(default=3, metadata={"choices": (3, 4)})
    # Real-only random horizontal flip (BigGAN-PyTorch's preparation).
    hflip: bool = False
    # Use only the first ``limit`` images (few-shot subsets); null = all.
    limit: Optional[int] = field(default=None, metadata={"min": 1, "max": MAX_COUNT})
    # Keyword arguments of a registered dataset (e.g. the size of a procedural set).
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def is_path(self) -> bool:
        return self.name.endswith((".h5", ".hdf5")) or os.sep in self.name

    def validate(self, path: str) -> None:
        if self.is_path():
            if self.kwargs:
                raise ConfigError(f"{path}.kwargs", self.kwargs, "no kwargs for an HDF5 file path")
            return
        from harness.data import known_dataset
        from harness.data.cache import built_datasets

        if not known_dataset(self.name):
            imported = [n for n in built_datasets() if n not in registry.DATASETS]
            raise ConfigError(
                f"{path}.name",
                self.name,
                "a path to an .h5/.hdf5 file, a registered dataset ("
                + ", ".join(registry.DATASETS.names())
                + ")" + (", or an imported one (" + ", ".join(imported) + ")" if imported else ""),
            )
        if self.name in registry.DATASETS:
            registry.DATASETS.validate_kwargs(self.name, self.kwargs, f"{path}.kwargs")
        elif self.kwargs:
            raise ConfigError(f"{path}.kwargs", self.kwargs, "no kwargs for an imported dataset")


@dataclass
class VariantRef:
    name: str = ""
    # Keyword arguments of the named variant, checked by its own parameters (`ganbench list`).
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ArchitectureSpec(VariantRef):
    # The G/D pair (a registered architecture).
    name: str = field(default="dcgan", metadata={"choices": _names(registry.ARCHITECTURES)})


@dataclass
class LossSpec(VariantRef):
    # The adversarial loss (a registered loss).
    name: str = field(default="hinge", metadata={"choices": _names(registry.LOSSES)})


@dataclass
class TransferSpec:
    # How G and D start from a source model and which parameters train in which stage.
    method: str = field(default="scratch", metadata={"choices": _names(registry.TRANSFERS)})
    # A model-zoo name or a zoo entry's directory (null for scratch); see harness.zoo.
    source: Optional[str] = None
    # Keyword arguments of the named variant, checked by its own parameters.
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class AugmentSpec:
    # Differentiable augmentation of real and fake images seen by D.
    policy: str = field(default="none", metadata={"choices": _names(registry.AUGMENTS)})
    # Keyword arguments of the named variant, checked by its own parameters.
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RegularizerSpec:
    # A registered regularizer; each at most once per trial.
    name: str = field(metadata={"choices": _names(registry.REGULARIZERS)})
    # Multiplier of its loss term.
    weight: float = field(default=1.0, metadata={"min": 0.0, "max": 1e6})
    # Keyword arguments of the named variant, checked by its own parameters.
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class AccumulationSpec:
    # Gradient accumulation steps per optimizer step, separately for D and G (as BigGAN).
    d: int = field(default=1, metadata={"min": 1, "max": MAX_ACCUMULATION})
    # (g: the generator's; d: the discriminator's.)
    g: int = field(default=1, metadata={"min": 1, "max": MAX_ACCUMULATION})


@dataclass
class OptimizationSpec:
    # Images per forward pass of one worker; the effective batch is batch_size x
    # workers x accumulation.
    batch_size: int = field(default=32, metadata={"min": 1, "max": MAX_BATCH})
    accumulation: AccumulationSpec = field(default_factory=AccumulationSpec)
    # Data-parallel workers the effective batch is split over, gradients averaged
    # (harness/distributed.py). A study sets it from resources.workers; ganbench trial
    # runs one worker.
    workers: int = field(default=1, metadata={"min": 1, "max": 1024})
    # Adam learning rate of G.
    lr_g: float = field(default=2e-4, metadata={"min_exclusive": 0.0})
    # Adam learning rate of D.
    lr_d: float = field(default=2e-4, metadata={"min_exclusive": 0.0})
    # Adam betas, each in [0, 1).
    betas: Tuple[float, float] = (0.5, 0.999)
    # Adam epsilon; BigGAN uses 1e-6 (fp16) / 1e-8.
    eps: float = field(default=1e-8, metadata={"min_exclusive": 0.0, "max": 1.0})
    # D updates per G update (5 for WGAN-GP, seed D).
    d_steps: int = field(default=1, metadata={"min": 1, "max": 100})
    # G updates to train (each after d_steps D updates): the budget, or the cap of a
    # samples or seconds budget.
    iterations: int = field(default=1000, metadata={"min": 1, "max": MAX_COUNT})
    # Stop once D has been shown this many real images (StyleGAN's kimg x 1000; each
    # iteration shows batch_size x workers x accumulation.d x d_steps); null = no samples budget.
    # The budget no hardware can bend: the same on any machine, busy or idle.
    samples: Optional[int] = field(default=None, metadata={"min": 1, "max": MAX_COUNT * MAX_BATCH})
    # Stop after this many seconds of training on ``clock``, evaluating at that point;
    # null = no time budget. Evaluation, samples and checkpoints never count. A time
    # budget makes the iteration count machine-dependent: use it for equal-compute
    # comparisons, not for bit-reproducible ones.
    time_budget_s: Optional[float] = field(default=None, metadata={"min_exclusive": 0.0, "max": 1e8})
    # What time_budget_s counts (docs/concepts.md): compute = the trial process's CPU
    # time in its training steps on a CPU device, the GPU time of its training steps
    # (CUDA events) on a CUDA device; wall = wall-clock seconds of training (the machine's
    # other load changes what a trial gets).
    clock: str = field(default="compute", metadata={"choices": CLOCKS})

    def validate(self, path: str) -> None:
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"{path}.betas[{i}]", beta, "a number in [0, 1)")
        if self.samples is not None and self.samples < self.samples_per_iteration:
            raise ConfigError(f"{path}.samples", self.samples, "at least one iteration's real images shown to D "
                              f"(batch_size x workers x accumulation.d x d_steps = {self.samples_per_iteration})")

    @property
    def samples_per_iteration(self) -> int:
        """Real images D sees per iteration (G step), over all workers."""
        return self.effective_batch_d * self.d_steps

    @property
    def iteration_limit(self) -> int:
        """The last iteration: ``iterations``, or fewer when the samples budget ends first."""
        if self.samples is None:
            return self.iterations
        return min(self.iterations, -(-self.samples // self.samples_per_iteration))

    @property
    def effective_batch_d(self) -> int:
        return self.batch_size * self.workers * self.accumulation.d

    @property
    def effective_batch_g(self) -> int:
        return self.batch_size * self.workers * self.accumulation.g


@dataclass
class EmaSpec:
    # decay 0 disables the EMA generator (G_ema then equals G).
    decay: float = field(default=0.999, metadata={"min": 0.0, "max": 1.0})
    # Before this iteration G_ema copies G (BigGAN's ema_start).
    start: int = field(default=0, metadata={"min": 0, "max": MAX_COUNT})
    # StyleGAN's EMA: the images over which G_ema's weight halves (ema_kimg x 1000;
    # paper256: 20000); each step's decay is 0.5 ** (effective_batch_g / half_life_images).
    # Set, it replaces decay; null = decay.
    half_life_images: Optional[int] = field(default=None, metadata={"min": 1, "max": 10 ** 12})

    def step_decay(self, images_per_step: int) -> float:
        """The decay of one EMA update after a G step over ``images_per_step`` images."""
        if self.half_life_images is None:
            return self.decay
        return 0.5 ** (images_per_step / self.half_life_images)


@dataclass
class EvalSpec:
    # Evaluate every N iterations (and always at the last one); 0 = only at the end.
    every: int = field(default=500, metadata={"min": 0, "max": MAX_COUNT})
    # Generated images per evaluation (the metrics' n; part of their protocol).
    n_samples: int = field(default=500, metadata={"min": 1, "max": 10 ** 6})
    # Registered metrics computed at every evaluation (docs/metrics.md).
    metrics: List[str] = field(default_factory=list, metadata={"choices": _names(registry.METRICS)})
    # Batch size used to generate evaluation samples (memory only, not results).
    batch_size: int = field(default=100, metadata={"min": 1, "max": MAX_BATCH})
    # Truncation of the latent at evaluation/sampling time (null = none; BigGAN's trick).
    truncation: Optional[float] = field(default=None, metadata={"min_exclusive": 0.0, "max": 100.0})
    # Options of the listed metrics by name, e.g. {kid_effnet: {subset_size: 50},
    # prdc_effnet: {k_precision_recall: 5}} (docs/metrics.md); recorded in their protocol.
    metric_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)


@dataclass
class PerformanceSpec:
    # How the trial computes, not what: the switches change numbers only by float
    # rounding (a trial stays reproducible with the same switches) and are recorded in
    # every report row. channels_last: G and D weights and activations in NHWC layout
    # (faster convolutions on CPU; see tests/bench/test_training_switches.py).
    channels_last: bool = True
    # torch.compile G and D (compile time is paid once per process; tried on a copy of
    # the models first, so a platform without a working compiler, or a step it cannot
    # compile, falls back to eager with one warning naming the reason).
    compile: bool = False
    # Precision of G's and D's forward passes in training: fp32, bf16 (CUDA; CPU: speed
    # depends on its bf16 instructions) or fp16 (CUDA only; one gradient scaler per optimizer, a skipped step is
    # not a divergence). Penalties, regularizers, optimizer and EMA steps stay fp32;
    # evaluation is always fp32 without TF32 (harness/precision.py).
    precision: str = field(default="fp32", metadata={"choices": PRECISIONS})
    # CUDA: TF32 matmuls and cuDNN convolutions in training (never in evaluation).
    allow_tf32: bool = False
    # CUDA: cuDNN times its algorithms and keeps the fastest (not bitwise reproducible).
    cudnn_benchmark: bool = False
    # Deterministic algorithms only (torch.use_deterministic_algorithms; an op without
    # one raises).
    deterministic: bool = False
    # Batch norm statistics over all data-parallel workers' batches (SyncBatchNorm; CUDA
    # only, a model with batch norm only; with one worker it changes nothing).
    sync_batchnorm: bool = False


_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


@dataclass
class TrialSpec:
    # A label for the trial (records and reports show it).
    name: str = "trial"
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    architecture: ArchitectureSpec = field(default_factory=ArchitectureSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    transfer: TransferSpec = field(default_factory=TransferSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    # Loss-term regularizers, each {name, weight, kwargs}.
    regularizers: List[RegularizerSpec] = field(default_factory=list)
    optimization: OptimizationSpec = field(default_factory=OptimizationSpec)
    ema: EmaSpec = field(default_factory=EmaSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    performance: PerformanceSpec = field(default_factory=PerformanceSpec)
    # Experiment trackers (TensorBoard on by default; MLflow, W&B): docs/tracking.md.
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    # Report losses every N iterations (evaluations always report).
    log_every: int = field(default=50, metadata={"min": 1, "max": MAX_COUNT})
    # Write a checksummed checkpoint every N iterations (and at the end).
    checkpoint_every: int = field(default=500, metadata={"min": 1, "max": MAX_COUNT})
    # Checkpoints kept on disk, newest first (0 = keep every one, e.g. one per epoch for
    # later comparison as in seed B; each is a full training state).
    keep_checkpoints: int = field(default=2, metadata={"min": 0, "max": 10 ** 6})
    # Save a sample grid of the fixed evaluation noise every N iterations (0 = never).
    sample_every: int = field(default=200, metadata={"min": 0, "max": MAX_COUNT})
    # Seeds data order, latents, augmentation and initialization (a study sets it).
    seed: int = field(default=0, metadata={"min": 0, "max": INT_LIMIT})
    # cpu, cuda, cuda:N or mps.
    device: str = "cpu"
    # torch intra-op threads for this trial (one per trial per core is fastest on CPU).
    threads: int = field(default=1, metadata={"min": 1, "max": 4096})

    def validate(self, path: str = "") -> None:
        p = (path + ".") if path else ""
        if not _DEVICE.match(self.device):
            raise ConfigError(f"{p}device", self.device, "cpu, cuda, cuda:N or mps")
        o = self.optimization
        if o.time_budget_s is not None and o.clock == "compute" and self.device.split(":")[0] not in COMPUTE_DEVICES:
            raise ConfigError(f"{p}optimization.clock", o.clock, f"wall on device {self.device} (the compute clock "
                              f"is measured on {' and '.join(COMPUTE_DEVICES)} devices only)")
        kind, precision = self.device.split(":")[0], self.performance.precision
        if kind not in PRECISION_DEVICES[precision]:
            able = [name for name, kinds in PRECISION_DEVICES.items() if kind in kinds]
            raise ConfigError(f"{p}performance.precision", precision, f"{' or '.join(able)} on device {self.device} "
                              f"({precision} trains on {' and '.join(PRECISION_DEVICES[precision])} only)")
        if self.performance.sync_batchnorm:
            self._check_sync_batchnorm(p, kind)
        # Every variant validates its kwargs, then may veto the whole spec (e.g. an
        # architecture that cannot build this resolution) through check_config.
        _check_variant(self, registry.ARCHITECTURES, self.architecture.name, self.architecture.kwargs,
                       f"{p}architecture.name", f"{p}architecture.kwargs", p)
        _check_variant(self, registry.LOSSES, self.loss.name, self.loss.kwargs, f"{p}loss.name",
                       f"{p}loss.kwargs", p)
        _check_variant(self, registry.AUGMENTS, self.augment.policy, self.augment.kwargs, f"{p}augment.policy",
                       f"{p}augment.kwargs", p)
        _check_variant(self, registry.TRANSFERS, self.transfer.method, self.transfer.kwargs,
                       f"{p}transfer.method", f"{p}transfer.kwargs", p)
        seen = set()
        for i, reg in enumerate(self.regularizers):
            rpath = f"{p}regularizers[{i}]"
            if reg.name in seen:
                raise ConfigError(f"{rpath}.name", reg.name, "each regularizer at most once")
            seen.add(reg.name)
            _check_variant(self, registry.REGULARIZERS, reg.name, reg.kwargs, f"{rpath}.name", f"{rpath}.kwargs", p)
        if len(set(self.eval.metrics)) != len(self.eval.metrics):
            raise ConfigError(f"{p}eval.metrics", self.eval.metrics, "each metric at most once")
        self._check_metric_options(p)

    def _check_sync_batchnorm(self, p: str, kind: str) -> None:
        from harness.build import meta_networks
        from harness.distributed import batch_norm_layers

        if kind != "cuda":
            raise ConfigError(f"{p}performance.sync_batchnorm", True, f"false on device {self.device} (torch's "
                              "SyncBatchNorm runs on CUDA devices only)")
        if not sum(batch_norm_layers(net) for net in meta_networks(self)):
            raise ConfigError(f"{p}performance.sync_batchnorm", True, f"false: architecture {self.architecture.name} "
                              "with these kwargs has no batch norm layer in G or D to synchronise")

    def _check_metric_options(self, p: str) -> None:
        from harness.metrics import check_sizes, value_keys

        for name, options in self.eval.metric_options.items():
            if name not in self.eval.metrics:
                raise ConfigError(f"{p}eval.metric_options", name,
                                  "options of a metric in eval.metrics (" + (", ".join(self.eval.metrics) or "none")
                                  + ")")
            registry.METRICS.validate_kwargs(name, options, f"{p}eval.metric_options.{name}")
        value_keys(self.eval.metrics, self.eval.metric_options)
        check_sizes(self.eval.metrics, self.eval.n_samples, None, self.eval.metric_options,
                    fake_path=f"{p}eval.n_samples")

    # -- conversions -------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: Dict[str, Any]) -> "TrialSpec":
        """A new validated spec with dotted-path ``overrides`` applied."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            set_dotted(data, dotted, value)
        return parse_trial(data)


# Sections that change how a trial is watched, not what it computes: a resume may change them.
NOT_IDENTITY = ("tracking",)


def identity(config: Dict[str, Any]) -> Dict[str, Any]:
    """A trial config (plain data) without the sections that do not make it another trial."""
    return {k: v for k, v in config.items() if k not in NOT_IDENTITY}


def _check_variant(spec: "TrialSpec", reg: registry.Registry, name: str, kwargs: Dict[str, Any],
                   name_path: str, kwargs_path: str, prefix: str) -> None:
    entry = reg.get(name, name_path)
    params = reg.validate_kwargs(name, kwargs, kwargs_path)
    check = getattr(entry.obj, "check_config", None)
    if check is not None:
        check(params, spec, prefix)


def regularizer_path(spec: "TrialSpec", name: str, prefix: str = "") -> str:
    """``regularizers[i]`` of the regularizer called ``name`` (for check_config errors)."""
    for i, r in enumerate(spec.regularizers):
        if r.name == name:
            return f"{prefix}regularizers[{i}]"
    return f"{prefix}regularizers"


# Keys may hold '-' (zoo names such as sources.emoji-google-32 are keys of a study).
_TOKEN = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)((?:\[[^\[\]]+\])*)$")


def split_path(dotted: str) -> List[Any]:
    """``regularizers[cr].weight`` -> ["regularizers", ("cr",), "weight"].

    A bracket selects a list item: ``[0]`` by index, ``[cr]`` by its ``name`` (so a study
    can address a regularizer without knowing its position); keys are plain strings.
    """
    tokens: List[Any] = []
    for part in dotted.split("."):
        m = _TOKEN.match(part)
        if not m:
            raise ConfigError("path", dotted, "a dotted config path such as optimization.lr_g or "
                              "regularizers[cr].weight")
        tokens.append(m.group(1))
        for sel in re.findall(r"\[([^\[\]]+)\]", m.group(2)):
            tokens.append((sel,))
    return tokens


def _select(items: Any, sel: str, dotted: str) -> int:
    if not isinstance(items, list):
        raise ConfigError(dotted, items, f"a list to select [{sel}] from")
    if sel.lstrip("-").isdigit():
        i = int(sel)
        if not -len(items) <= i < len(items):
            raise ConfigError(dotted, len(items), f"a list with an item [{sel}]")
        return i
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == sel:
            return i
    names = [item.get("name") for item in items if isinstance(item, dict)]
    raise ConfigError(dotted, names, f"an item named {sel!r} in the list")


def set_dotted(data: Dict[str, Any], dotted: str, value: Any) -> None:
    tokens = split_path(dotted)
    node: Any = data
    for i, key in enumerate(tokens[:-1]):
        if isinstance(key, tuple):
            node = node[_select(node, key[0], dotted)]
            continue
        nxt = node.get(key) if isinstance(node, dict) else None
        if nxt is None or (not isinstance(nxt, (dict, list))):
            if isinstance(tokens[i + 1], tuple):
                raise ConfigError(dotted, nxt, f"a list at {key} to select {tokens[i + 1][0]!r} from")
            # A section the file leaves out is created; a misspelt one is then an
            # unknown key that validation names.
            nxt = {}
            node[key] = nxt
        node = nxt
    last = tokens[-1]
    if isinstance(last, tuple):
        node[_select(node, last[0], dotted)] = copy.deepcopy(value)
    else:
        if not isinstance(node, dict):
            raise ConfigError(dotted, node, "a mapping to set a key in")
        node[last] = copy.deepcopy(value)


_MISSING = object()


def get_dotted(data: Any, dotted: str, default: Any = _MISSING) -> Any:
    """The value at ``dotted`` (same syntax as :func:`set_dotted`); ``default`` if absent."""
    node = data
    try:
        for key in split_path(dotted):
            if isinstance(key, tuple):
                node = node[_select(node, key[0], dotted)]
            else:
                node = node[key]
    except (KeyError, TypeError, ConfigError):
        if default is _MISSING:
            raise ConfigError(dotted, None, "a path that exists in the config") from None
        return default
    return node


def parse_trial(data: Any, path: str = "") -> TrialSpec:
    """Build and validate a :class:`TrialSpec` from plain data (a YAML mapping)."""
    return build_dataclass(TrialSpec, data, path)


def load_yaml(file: str) -> Any:
    """A YAML file, parsed within ganbench's bounds (:mod:`harness.safe_yaml`)."""
    from harness import safe_yaml

    return safe_yaml.load_file(file)


def load_trial(file: str) -> TrialSpec:
    return parse_trial(load_yaml(file))
