"""The study file's schema: StudySpec and its parts, presets, ``set`` and ``--set``.

A study file names a ``base`` trial config and says how trials differ from it::

    grid:      {dotted.path: [values, ...], ...}     full product of the lists
    variants:  [{name: ..., set: {dotted.path: value}}, ...]   named partial configs
    seeds:     [0, 1, 2]                              every configuration once per seed
    search:    an Optuna search space, sampler, ASHA scheduler, finalists

:func:`read_study` resolves presets and overrides and builds the typed StudySpec; the
whole-study checks that need the trial schema happen when it is planned
(:mod:`harness.study.planning`). No Ray import here.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.clocks import CLOCKS
from harness.errors import ConfigError
from harness.spec import MAX_BATCH, MAX_COUNT, load_yaml, set_dotted, split_path
from harness.tracking.spec import TrackingSpec
from harness.validation import INT_LIMIT, build_dataclass, to_plain

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Paths a study sets itself; a grid, variant or search may not set them too.
SEED_PATH = "seed"


@dataclass
class VariantSpec:
    # The variant's label in tables (letters, digits, '_', '.', '-').
    name: str
    # dotted config path -> value (``regularizers[cr].weight`` selects by name)
    set: Dict[str, Any] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"{path}.name", self.name, "letters, digits, '_', '.', '-'")


@dataclass
class BudgetSpec:
    """The same budget for every trial: iterations, samples, seconds of training on a
    clock, or several (the first one spent ends the trial)."""

    # Every trial's optimization.iterations.
    iterations: Optional[int] = field(default=None, metadata={"min": 1, "max": MAX_COUNT})
    # Every trial's real images shown to D (optimization.samples; kimg x 1000): the same
    # on any hardware, busy or idle.
    samples: Optional[int] = field(default=None, metadata={"min": 1, "max": MAX_COUNT * MAX_BATCH})
    # Every trial's seconds of training (optimization.time_budget_s) on ``clock``.
    seconds: Optional[float] = field(default=None, metadata={"min_exclusive": 0.0, "max": 1e8})
    # compute: the trial's own CPU time (CPU device) or GPU time of its steps (CUDA
    # events); wall: wall-clock seconds, which other work on the machine changes.
    clock: str = field(default="compute", metadata={"choices": CLOCKS})

    def validate(self, path: str) -> None:
        if self.iterations is None and self.seconds is None and self.samples is None:
            raise ConfigError(path, {}, "iterations, samples and/or seconds")

    def describe(self) -> str:
        parts = []
        if self.samples is not None:
            parts.append(f"{self.samples:,} samples")
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} s of {self.clock} time")
        if self.iterations is not None:
            parts.append(f"{self.iterations:,} iterations")
        return " or ".join(parts) + " (the first spent)" * (len(parts) > 1)


@dataclass
class ResourcesSpec:
    # Ray resources of one trial (of each of its workers); fractions share a device
    # (two trials on one GPU: 0.5).
    cpus: float = field(default=1.0, metadata={"min_exclusive": 0.0, "max": 4096.0})
    # GPUs per trial or worker (> 0 exactly when base.device is cuda).
    gpus: float = field(default=0.0, metadata={"min": 0.0, "max": 1024.0})
    # Data-parallel workers per trial (> 1: Ray Train's TorchTrainer inside the study,
    # gloo on CPU, NCCL on CUDA; each worker takes cpus and gpus, the effective batch is
    # batch_size x workers x accumulation): docs/gpu.md.
    workers: int = field(default=1, metadata={"min": 1, "max": 1024})
    # At most this many trials at once (0 = as many as the cluster's resources fit).
    max_concurrent: int = field(default=0, metadata={"min": 0, "max": MAX_COUNT})

    @property
    def threads(self) -> int:
        """torch threads per trial: its whole CPUs (at least one)."""
        return max(1, int(self.cpus))


@dataclass
class FailuresSpec:
    # Restarts of a trial whose worker or node died (from its last checkpoint). A trial
    # that raises is recorded failed and not retried; a diverged one is final too.
    max_retries: int = field(default=2, metadata={"min": 0, "max": 1000})


PARAM_TYPES = ("float", "int", "categorical")


@dataclass
class ParamSpec:
    # float / int (low, high, log, step) or categorical (choices).
    type: str = field(metadata={"choices": PARAM_TYPES})
    # Bounds of a float or int parameter (inclusive).
    low: Optional[float] = None
    # (high: the upper bound.)
    high: Optional[float] = None
    # Sample on a log scale (low > 0).
    log: bool = False
    # Discretization step of a float/int parameter (not with log).
    step: Optional[float] = field(default=None, metadata={"min_exclusive": 0.0})
    # The values of a categorical parameter (any YAML value).
    choices: Optional[List[Any]] = None
    # Sample this parameter only when every listed path (an earlier parameter or a base
    # config path) holds the given value, or one of the given values if a list.
    when: Dict[str, Any] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError(f"{path}.choices", self.choices, "a non-empty list for a categorical parameter")
            for key in ("low", "high", "step"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"{path}.{key}", getattr(self, key), "nothing for a categorical parameter")
            if self.log:
                raise ConfigError(f"{path}.log", True, "false for a categorical parameter")
            labels = [choice_label(c) for c in self.choices]
            if len(set(labels)) != len(labels):
                raise ConfigError(f"{path}.choices", self.choices, "distinct choices")
            return
        if self.choices is not None:
            raise ConfigError(f"{path}.choices", self.choices, f"nothing for a {self.type} parameter (use low/high)")
        for key in ("low", "high"):
            if getattr(self, key) is None:
                raise ConfigError(f"{path}.{key}", None, f"a number (required for a {self.type} parameter)")
        if self.type == "int":
            for key in ("low", "high", "step"):
                v = getattr(self, key)
                if v is not None and float(v) != int(v):
                    raise ConfigError(f"{path}.{key}", v, "an integer for an int parameter")
        if not self.low < self.high:
            raise ConfigError(f"{path}.high", self.high, f"a value > low ({self.low})")
        if self.log and self.low <= 0:
            raise ConfigError(f"{path}.low", self.low, "a value > 0 with log: true")
        if self.log and self.step is not None:
            raise ConfigError(f"{path}.step", self.step, "no step with log: true (Optuna allows one or the other)")

    def extremes(self) -> List[Any]:
        """Values to validate against the base config: the bounds, or every choice."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


def choice_label(value: Any) -> Any:
    """Optuna stores only None/bool/int/float/str choices: other values (lists, mappings such
    as a regularizer list) are stored as their canonical JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


SAMPLERS = ("tpe", "random")


@dataclass
class SamplerSpec:
    # Optuna's sampler: TPE or random.
    name: str = field(default="tpe", metadata={"choices": SAMPLERS})
    # The sampler's seed (the same seed proposes the same trials).
    seed: int = field(default=0, metadata={"min": 0, "max": INT_LIMIT})


SCHEDULERS = ("asha", "none")


@dataclass
class SchedulerSpec:
    # ASHA stops trials whose reported objective is in the worst (1 - 1/reduction_factor)
    # at a rung; rungs start at grace_period (iterations, or seconds with a seconds budget).
    name: str = field(default="asha", metadata={"choices": SCHEDULERS})
    # The first rung (null = one evaluation interval).
    grace_period: Optional[float] = field(default=None, metadata={"min_exclusive": 0.0})
    # Keep the best 1/reduction_factor at each rung.
    reduction_factor: float = field(default=2.0, metadata={"min_exclusive": 1.0})


@dataclass
class FinalistsSpec:
    # Re-run the best k completed search configurations with these fresh seeds.
    k: int = field(default=1, metadata={"min": 1})
    # Seeds of the finalist runs (distinct).
    seeds: List[int] = field(default_factory=lambda: [1, 2, 3])
    # Also run the base config itself (no searched parameter) with the same seeds, so the
    # tables say what the search gained over the starting point ("base (unsearched)").
    baseline: bool = False

    def validate(self, path: str) -> None:
        if not self.seeds:
            raise ConfigError(f"{path}.seeds", self.seeds, "a non-empty list of seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{path}.seeds", self.seeds, "distinct seeds")


OBJECTIVES = ("best", "last")


@dataclass
class SearchSpec:
    # The value key the search optimizes: one reported by the base's eval.metrics
    # (precision_effnet), or a metric of them that reports exactly one (fd_effnet).
    metric: str
    # Search trials Optuna proposes (ASHA may stop some early).
    n_trials: int = field(metadata={"min": 1})
    # Dotted config path -> the parameter's range or choices.
    space: Dict[str, ParamSpec] = field(default_factory=dict)
    # min / max; null = the value key's own direction (FID: min, precision: max).
    mode: Optional[str] = field(default=None, metadata={"choices": ("min", "max")})
    # best: the best value reached within the budget (seed A's protocol); last: final value.
    objective: str = field(default="best", metadata={"choices": OBJECTIVES})
    # How Optuna proposes trials.
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    # Early stopping of poor trials (ASHA) or none.
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    # Re-run the best configurations with fresh seeds (null = none).
    finalists: Optional[FinalistsSpec] = None

    def validate(self, path: str) -> None:
        if not self.space:
            raise ConfigError(f"{path}.space", self.space, "at least one parameter")
        seen: List[str] = []
        for name, param in self.space.items():
            split_path(name)
            if name == SEED_PATH or name == "threads":
                raise ConfigError(f"{path}.space.{name}", name, "a config path other than seed/threads "
                                  "(the study sets those)")
            for cond in param.when:
                split_path(cond)
                if cond == name:
                    raise ConfigError(f"{path}.space.{name}.when.{cond}", cond, "another parameter or config path")
            seen.append(name)


@dataclass
class StudySpec:
    # The study's name: it names the results folder RESULTS/<name>/.
    name: str
    # A trial config mapping, or a path to a trial YAML (relative to the study file).
    base: Any = None
    # Free text shown at the top of the report.
    description: str = ""
    # Dotted config path -> values; the study runs the full product.
    grid: Dict[str, List[Any]] = field(default_factory=dict)
    # Named partial configs, each run with every grid cell.
    variants: List[VariantSpec] = field(default_factory=list)
    # Every configuration runs once per seed (distinct integers >= 0).
    seeds: List[int] = field(default_factory=lambda: [0])
    # Keep the base's effective batch (batch_size x workers x accumulation, D and G) in
    # every trial: a variant that changes batch_size or resources.workers gets the
    # accumulation that restores it (seed A's regret).
    hold_effective_batch: bool = False
    # The same budget for every trial (overrides the base's).
    fixed_budget: Optional[BudgetSpec] = None
    # An Optuna search instead of a grid (not both in one study).
    search: Optional[SearchSpec] = None
    # What Ray reserves for one trial, and how many run at once.
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    # Retries of trials whose worker or node died.
    failures: FailuresSpec = field(default_factory=FailuresSpec)
    # Transfer source models the study needs: zoo name -> the trial config (a mapping, or
    # a path relative to the study file) that pretrains it. `ganbench run` pretrains the
    # missing ones before scheduling; trials validate against them before that.
    sources: Dict[str, Any] = field(default_factory=dict)
    # Random half/half splits of each trial's reference set for the real-vs-real floor of
    # every metric (computed before scheduling, cached, shown beside every value in
    # tables and the report); 0 = no floors.
    floor_splits: int = field(default=5, metadata={"min": 0, "max": 100})
    # Experiment trackers of every trial (replaces the base's tracking section; same keys:
    # docs/tracking.md); MLflow runs nest under one run of the study, W&B runs are grouped
    # by the study's name. Changing it does not change the study: a resume may.
    tracking: Optional[TrackingSpec] = None
    # The preset this study was resolved with (set by parse_study; recorded in the
    # study.yaml as run, which can itself be run again).
    preset: Optional[str] = None

    def validate(self, path: str) -> None:
        if not _NAME.match(self.name):
            raise ConfigError("name", self.name, "letters, digits, '_', '.', '-' (it names the results directory)")
        if not isinstance(self.base, dict):
            raise ConfigError("base", self.base, "a trial config mapping (or a path to a trial YAML file)")
        if not self.seeds:
            raise ConfigError("seeds", self.seeds, "a non-empty list of integer seeds")
        for i, seed in enumerate(self.seeds):
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= INT_LIMIT:
                raise ConfigError(f"seeds[{i}]", seed, f"an integer in 0..{INT_LIMIT} (2^63 - 1)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds", self.seeds, "distinct seeds")
        from harness.data.cache import valid_name

        for name, config in self.sources.items():
            if not isinstance(name, str) or not valid_name(name):
                raise ConfigError(f"sources.{name}", name, "a zoo name: letters, digits, '.', '_', '-'")
            if not isinstance(config, dict):
                raise ConfigError(f"sources.{name}", config, "a trial config mapping (or a path to a trial YAML)")
        for key, values in self.grid.items():
            split_path(key)
            if key in (SEED_PATH, "threads"):
                raise ConfigError(f"grid.{key}", values, "a config path other than seed/threads (use seeds:)")
            if not values:
                raise ConfigError(f"grid.{key}", values, "a non-empty list of values")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ConfigError("variants", names, "distinct variant names")
        for i, v in enumerate(self.variants):
            for key in v.set:
                split_path(key)
                if key in self.grid:
                    raise ConfigError(f"variants[{i}].set.{key}", v.set[key],
                                      "a path the grid does not also vary (grid varies it)")
        if self.search is not None and (self.grid or self.variants):
            raise ConfigError("search", "search + grid/variants",
                              "either a search or a grid/variants ablation in one study (use two studies)")
        if self.resources.gpus > 0 and not str(self.base.get("device", "cpu")).startswith("cuda"):
            raise ConfigError("resources.gpus", self.resources.gpus,
                              "0 unless base.device is cuda (Ray gives the trial its GPU as cuda:0)")
        if str(self.base.get("device", "cpu")).startswith("cuda") and self.resources.gpus <= 0:
            raise ConfigError("resources.gpus", self.resources.gpus,
                              "a value > 0 for base.device cuda (Ray hides GPUs from trials that ask for none)")

    def to_dict(self) -> Dict[str, Any]:
        return to_plain(self)




# ------------------------------------------------------------------------- loading
def read_study(data: Any, base_dir: Optional[os.PathLike] = None, preset: Optional[str] = None,
                overrides: Optional[Dict[str, Any]] = None) -> StudySpec:
    """Build the StudySpec of a study mapping; a string ``base`` is loaded relative to
    ``base_dir``. Whole-study checks run when it is planned (``plan_study``).

    A study file may define ``presets``: named sets of dotted overrides of the study itself
    (``base.optimization.batch_size``, ``fixed_budget.iterations``, ``seeds``,
    ``resources.gpus`` ...), e.g. ``gpu`` at the authors' scale and ``cpu`` for a laptop.
    A preset may also name another ``base`` or source file (``base: presets/x.yaml``) and
    then override keys inside it; entries apply in order. Such a study runs only with a
    ``preset`` chosen; its name gets ``-<preset>`` appended
    (unless the preset sets ``name``) so presets never share a results directory, and the
    study as run records the preset and no longer carries the others. ``overrides`` (the
    CLI's ``--set``) apply last, after the base file is loaded, so ``base.<path>`` works
    for a base given as a file too.

    ``set`` (dotted base paths -> values) changes the base for every trial ("this trial
    file, but evaluated every 200 iterations"); it is folded into the base after the
    preset, so the study as run records the resulting base.
    """
    if not isinstance(data, dict):
        raise ConfigError("study", data, "a YAML mapping with name, base and grid/variants/search")
    data = copy.deepcopy(data)
    presets = data.pop("presets", None)
    _load_references(data, base_dir)
    if presets is not None:
        if not isinstance(presets, dict) or not presets or not all(isinstance(v, dict) for v in presets.values()):
            raise ConfigError("presets", presets, "a mapping of preset name -> {dotted.path: value, ...}")
        names = ", ".join(map(str, presets))
        if preset is None:
            raise ConfigError("--preset", None, f"one of {names} (this study file defines presets)")
        if preset not in presets:
            raise ConfigError("--preset", preset, f"one of {names}")
        for key, value in presets[preset].items():
            if key in ("presets", "preset"):
                raise ConfigError(f"presets.{preset}.{key}", value, "a study or base setting")
            try:
                _override(data, key, value)
            except ConfigError as err:
                raise ConfigError(f"presets.{preset}.{err.path}", err.value, err.expected) from None
            _load_references(data, base_dir)  # a preset may name another base / source file
        if "name" not in presets[preset] and isinstance(data.get("name"), str):
            data["name"] = f"{data['name']}-{preset}"
        data["preset"] = preset
    elif preset is not None:
        raise ConfigError("--preset", preset, "a study file that defines presets (this one has none)")
    overrides = dict(overrides or {})
    for key in [k for k in overrides if k.startswith("set.")]:  # into `set`, before it is folded
        _override(data, key, overrides.pop(key))
    common = data.pop("set", None)
    if common is not None:
        if not isinstance(common, dict) or not isinstance(data.get("base"), dict):
            raise ConfigError("set", common, "a mapping of dotted base paths -> values (applied to the base)")
        for key, value in common.items():
            try:
                set_dotted(data["base"], key, value)
            except ConfigError as err:
                raise ConfigError(f"set.{err.path}", err.value, err.expected) from None
    for key, value in overrides.items():
        set_dotted(data, key, value)
    return build_dataclass(StudySpec, data)


def _override(data: Dict[str, Any], key: str, value: Any) -> None:
    """A preset's or ``--set``'s dotted override of the study. ``set`` is itself a mapping
    of dotted base paths, so ``set.a.b.c: v`` adds the one entry ``a.b.c: v`` to it
    (changing only that key of the base), where a plain dotted path would nest a new
    ``a: {b: {c: v}}`` entry that replaces the base's whole ``a``."""
    if key.startswith("set.") and len(key) > 4:
        common = data.setdefault("set", {})
        if not isinstance(common, dict):
            raise ConfigError("set", common, "a mapping of dotted base paths -> values (applied to the base)")
        common[key[4:]] = value
        return
    set_dotted(data, key, value)


def _load_references(data: Dict[str, Any], base_dir: Optional[os.PathLike]) -> None:
    """Replace a ``base`` or ``sources.NAME`` given as a file path by the mapping it holds."""
    if isinstance(data.get("base"), str):
        data["base"] = _load_mapping(data["base"], base_dir, "base")
    sources = data.get("sources")
    if isinstance(sources, dict):
        for name, config in sources.items():
            if isinstance(config, str):
                sources[name] = _load_mapping(config, base_dir, f"sources.{name}")


def _load_mapping(file: str, base_dir: Optional[os.PathLike], path: str) -> Dict[str, Any]:
    """A trial YAML named by a study (relative to the study file's folder)."""
    target = Path(file)
    if not target.is_absolute() and base_dir is not None:
        target = Path(base_dir) / target
    loaded = load_yaml(str(target))
    if not isinstance(loaded, dict):
        raise ConfigError(path, file, "a trial YAML file holding a mapping")
    return loaded


def is_study(data: Any) -> bool:
    """A YAML mapping is a study (not a trial config) if it has a ``base``."""
    return isinstance(data, dict) and "base" in data

