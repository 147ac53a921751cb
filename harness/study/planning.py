"""Planning: a study expanded, once, into what will run — the :class:`Plan`.

``plan_study`` (or ``load_plan`` for a file) builds the StudySpec and plans it in one go:
every grid/variant trial as a validated :class:`TrialPlan` (trial id, labels, TrialSpec),
the search space checked against the base, the source models' trial configs and the zoo
cards they will have. The same Plan object is then passed to ``validate``, ``describe``,
the preparation step and the runner, so nothing re-expands the study, and a typo in the
twentieth grid cell fails in a second, not after nineteen trials (compare_gan keeps task
generation apart from task running in the same way). No Ray import here.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness.errors import ConfigError
from harness.spec import TrialSpec, get_dotted, load_yaml, parse_trial, set_dotted
from harness.study.schema import SEED_PATH, StudySpec, VariantSpec, choice_label, read_study
from harness.validation import to_plain


@dataclass
class TrialPlan:
    trial_id: str
    phase: str  # grid | search | finalist
    labels: Dict[str, Any]
    spec: TrialSpec
    # the search parameters this trial set (finalists re-run a search trial's overrides)
    overrides: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"trial_id": self.trial_id, "phase": self.phase, "labels": self.labels, "config": self.spec.to_dict(),
                "overrides": self.overrides}

    @staticmethod
    def search_id(number: int) -> str:
        """The trial id of Optuna trial ``number`` of a search."""
        return f"search-{number:04d}"

    def summary(self) -> Dict[str, Any]:
        """What the study folder's plan lists for this trial."""
        return {"trial_id": self.trial_id, "phase": self.phase, "labels": self.labels}


def base_spec(study: StudySpec) -> TrialSpec:
    try:
        return parse_trial(study.base)
    except ConfigError as err:
        raise ConfigError(f"base.{err.path}", err.value, err.expected) from None


def _common_overrides(study: StudySpec) -> Dict[str, Any]:
    out: Dict[str, Any] = {"threads": study.resources.threads, "optimization.workers": study.resources.workers}
    if study.tracking is not None:
        out["tracking"] = to_plain(study.tracking)
    if study.fixed_budget is not None:
        if study.fixed_budget.iterations is not None:
            out["optimization.iterations"] = study.fixed_budget.iterations
        if study.fixed_budget.samples is not None:
            out["optimization.samples"] = study.fixed_budget.samples
        if study.fixed_budget.seconds is not None:
            # whichever budget is spent first ends the trial (the base's iterations cap a
            # seconds-only budget: schedules such as instance-noise annealing need one)
            out["optimization.time_budget_s"] = study.fixed_budget.seconds
            out["optimization.clock"] = study.fixed_budget.clock
    return out


def make_trial(study: StudySpec, base: TrialSpec, overrides: Dict[str, Any], seed: int, context: str) -> TrialSpec:
    """Apply the study's common settings, ``overrides`` and the seed to ``base``; hold the
    effective batch if asked; validate, naming ``context`` (which grid cell) on error."""
    data = base.to_dict()
    if base.optimization.workers not in (1, study.resources.workers):
        raise ConfigError(f"{context}: optimization.workers", base.optimization.workers,
                          f"{study.resources.workers}, or left out: in a study resources.workers sets it")
    try:
        for key, value in {**_common_overrides(study), **overrides, SEED_PATH: seed}.items():
            set_dotted(data, key, value)
        if study.hold_effective_batch:
            _hold_effective_batch(data, base, overrides, study.resources.workers)
        spec = parse_trial(data)
        budget = study.fixed_budget
        if budget is not None and budget.samples is not None and budget.iterations is None \
                and "optimization.iterations" not in overrides:
            # a samples budget alone: the trial's iterations follow from it (they also set
            # annealing schedules), so the base's iteration count can never end it first
            spec = spec.replace({"optimization.iterations": -(-budget.samples // spec.optimization.samples_per_iteration)})
        return spec
    except ConfigError as err:
        raise ConfigError(f"{context}: {err.path}", err.value, err.expected) from None


def held_batch(base: TrialSpec, workers: int, which: str) -> int:
    """The effective batch hold_effective_batch keeps for D or G ("d"/"g"): the base's
    batch and accumulation on the study's ``workers`` (a base leaves workers to
    resources.workers)."""
    o = base.optimization
    return o.batch_size * workers * getattr(o.accumulation, which)


def _hold_effective_batch(data: Dict[str, Any], base: TrialSpec, overrides: Dict[str, Any], workers: int) -> None:
    """Every trial's batch_size x workers x accumulation = :func:`held_batch`."""
    batch = get_dotted(data, "optimization.batch_size")
    for which in ("d", "g"):
        target = held_batch(base, workers, which)
        path = f"optimization.accumulation.{which}"
        acc = get_dotted(data, path, 1)
        set_explicitly = path in overrides or (
            "optimization.accumulation" in overrides) or "optimization" in overrides
        if batch * workers * acc == target:
            continue
        if set_explicitly:
            raise ConfigError(path, acc, f"batch_size x workers x accumulation.{which} = {target} "
                              f"(hold_effective_batch: the base's effective batch; got {batch} x {workers} x {acc})")
        if target % (batch * workers):
            raise ConfigError("optimization.batch_size", batch, f"a divisor of the held effective batch {target} "
                              f"(hold_effective_batch; batch_size x {workers} worker(s) must divide it)")
        set_dotted(data, path, target // (batch * workers))


def source_specs(study: StudySpec) -> Dict[str, TrialSpec]:
    """The validated trial config of each of the study's ``sources``."""
    out = {}
    for name, config in study.sources.items():
        try:
            out[name] = parse_trial(config)
        except ConfigError as err:
            raise ConfigError(f"sources.{name}.{err.path}", err.value, err.expected) from None
    return out


def planned_sources(study: StudySpec, specs: Optional[Dict[str, TrialSpec]] = None) -> Dict[str, Dict[str, Any]]:
    """Cards of the study's sources that the zoo lacks (to validate trials against); a
    source the zoo already holds must have been pretrained from the same config."""
    from harness import zoo

    cards = {}
    for name, spec in (source_specs(study) if specs is None else specs).items():
        entry = zoo.zoo_dir() / name
        if (entry / zoo.CARD).is_file():
            card = zoo.read_card(entry)
            theirs, mine = card.get("trial_config") or {}, spec.to_dict()
            if theirs != mine:
                diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
                raise ConfigError(f"sources.{name}", name, f"a source the zoo does not already hold from another "
                                  f"config: {entry} was pretrained with different {', '.join(diff)}; remove that "
                                  "entry to pretrain this one, or give this source another name")
        else:
            cards[name] = zoo.planned_card(name, spec)
    return cards


# Planned trials a study may hold unless the user raises the cap (``--max-trials``):
# validating one trial takes milliseconds, so a 10,000-cell grid (a typo in a range,
# a forgotten key) costs minutes before it could schedule anything.
MAX_TRIALS = 1000


def check_trial_count(study: StudySpec, max_trials: int = MAX_TRIALS) -> int:
    """The number of trials ``study`` plans (grid x variants x seeds, or a search's trials
    and finalists), counted before any is built; ConfigError above ``max_trials``."""
    if study.search is not None:
        s = study.search
        finals = s.finalists
        count = s.n_trials + (len(finals.seeds) * (finals.k + int(finals.baseline)) if finals else 0)
        where = "search.n_trials"
    else:
        cells = 1
        for values in study.grid.values():
            cells *= len(values)
        count = cells * max(1, len(study.variants)) * len(study.seeds)
        where = "grid"
    if count > max_trials:
        raise ConfigError(where, f"{count:,} planned trials", f"at most {max_trials:,} planned trials (raise the cap "
                          "with --max-trials N if that many is meant)")
    return count


def _grid_trials(study: StudySpec, base: TrialSpec) -> List[TrialPlan]:
    """Every (variant x grid cell) x seed of a grid/variants study, validated."""
    variants = study.variants or [VariantSpec(name="", set={})]
    keys = list(study.grid)
    combos = list(itertools.product(*(study.grid[k] for k in keys))) if keys else [()]
    plans: List[TrialPlan] = []
    index = 0
    for vi, variant in enumerate(variants):
        for combo in combos:
            overrides = dict(variant.set)
            overrides.update(dict(zip(keys, combo)))
            labels: Dict[str, Any] = {}
            if variant.name:
                labels["variant"] = variant.name
            labels.update({k: choice_label(v) for k, v in zip(keys, combo)})
            cell = ", ".join(f"{k}={v}" for k, v in labels.items()) or "base"
            for seed in study.seeds:
                context = (f"variants[{vi}] ({variant.name})" if variant.name else "grid") + f" [{cell}], seed {seed}"
                spec = make_trial(study, base, overrides, seed, context)
                trial_id = f"c{index:03d}-s{seed}"
                plans.append(TrialPlan(trial_id, "grid", {**labels, "seed": seed}, spec))
            index += 1
    return plans


@dataclass
class Plan:
    """A study planned once: its spec, validated base, trials, sources and search settings."""

    study: StudySpec
    base: TrialSpec
    trials: List[TrialPlan]                     # the grid/variant trials ([] for a search)
    sources: Dict[str, TrialSpec]               # zoo name -> the trial that pretrains it
    missing_sources: Dict[str, Dict[str, Any]]  # planned zoo cards of the sources to pretrain

    @classmethod
    def of(cls, study: StudySpec, max_trials: int = MAX_TRIALS) -> "Plan":
        """Plan ``study``: validates everything a run would need, before any scheduling."""
        from harness import zoo

        check_trial_count(study, max_trials)
        sources = source_specs(study)
        missing = planned_sources(study, sources)
        with zoo.planned(missing):
            base = base_spec(study)
            trials = _grid_trials(study, base) if study.search is None else []
            if study.search is not None:
                from harness.study.search import check_search

                check_search(study, base)
        return cls(study, base, trials, sources, missing)

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def is_search(self) -> bool:
        return self.study.search is not None

    @property
    def metric(self) -> Optional[str]:
        """The value key the search optimizes (search.metric names it, or a metric that reports one)."""
        from harness.study.search import objective_key

        return objective_key(self.study.search.metric, self.base)[0] if self.study.search else None

    @property
    def mode(self) -> str:
        """The search's direction (min for a grid, where nothing is optimized)."""
        from harness.study.search import search_mode

        return search_mode(self.study, self.base) if self.study.search else "min"

    def make_trial(self, overrides: Dict[str, Any], seed: int, context: str) -> TrialSpec:
        return make_trial(self.study, self.base, overrides, seed, context)

    def search_trial(self, number: int, overrides: Dict[str, Any]) -> TrialPlan:
        from harness.study.search import search_trial

        return search_trial(self.study, number, overrides, self.base)

    def finalist_trials(self, ranked: List[Tuple[str, Dict[str, Any]]]) -> List[TrialPlan]:
        from harness.study.search import finalist_trials

        return finalist_trials(self.study, ranked, self.base)

    def prerequisite_specs(self) -> List[TrialSpec]:
        """Every trial config whose dataset must be built before scheduling: the sources,
        the grid trials, and (a search) the base, whose dataset every search trial uses."""
        specs = list(self.sources.values()) + [p.spec for p in self.trials]
        if self.is_search:
            specs.append(self.base)
        return specs

    def overview(self) -> Dict[str, Any]:
        """What the study runs — the base, budgets, seeds, resources, sources, evaluation
        and (a grid) every planned trial — as ``ganbench describe STUDY`` prints it."""
        st, b = self.study, self.base
        o, r = b.optimization, st.resources
        budget = (st.fixed_budget.describe() if st.fixed_budget is not None else
                  f"the base's: {o.iteration_limit} iterations" + (f" or {o.time_budget_s:g} s of {o.clock} time"
                                                                   if o.time_budget_s is not None else ""))
        out: Dict[str, Any] = {
            "study": st.name, "kind": "search" if self.is_search else "grid",
            "description": st.description,
            "base": f"{b.name}: {b.architecture.name}, {b.loss.name} loss, {b.dataset.name} {b.dataset.resolution} px, "
                    f"batch {o.batch_size} x " + (f"{r.workers} workers x " if r.workers > 1 else "")
                    + f"accumulation {o.accumulation.d}/{o.accumulation.g}, device {b.device}",
            "budget (every trial)": budget,
            "effective batch": f"held at {held_batch(b, r.workers, 'd')} (hold_effective_batch)"
                               if st.hold_effective_batch
                               else "as each trial sets it",
            "seeds": list(st.seeds),
            "evaluation": f"{', '.join(b.eval.metrics) or 'no metrics'} on {b.eval.n_samples} samples every "
                          f"{b.eval.every or 'end of'} iterations",
            "resources (per trial)": (f"{r.workers} workers of " if r.workers > 1 else "")
                                     + f"{r.cpus:g} CPU(s), {r.gpus:g} GPU(s), {r.threads} thread(s)"
                                     + (f", at most {r.max_concurrent} at once" if r.max_concurrent else ""),
            "sources": {name: f"{spec.architecture.name} on {spec.dataset.name} {spec.dataset.resolution} px, "
                              f"{spec.optimization.iteration_limit} iterations"
                              + (" (to pretrain)" if name in self.missing_sources else " (in the zoo)")
                        for name, spec in self.sources.items()},
            "trials": len(self.trials) if not self.is_search else st.search.n_trials,
        }
        return out

    def describe(self) -> str:
        """One line for the study (and one per planned trial of a grid)."""
        s = self.study.search
        if s is None:
            return f"valid study '{self.name}': {len(self.trials)} trials\n" + describe_plans(self.trials)
        return (f"valid search study '{self.name}': {s.n_trials} trials over {len(s.space)} parameters "
                f"({', '.join(s.space)}), {s.sampler.name} sampler, {s.scheduler.name} scheduler, objective "
                f"{s.objective} {s.metric}"
                + (f"; finalists: best {s.finalists.k}{' and the base config' if s.finalists.baseline else ''} "
                   f"x seeds {s.finalists.seeds}" if s.finalists else ""))


def plan(study: StudySpec) -> List[TrialPlan]:
    """The grid/variant trials of ``study`` (none for a search); validates the whole study."""
    return Plan.of(study).trials


def plan_study(data: Any, base_dir: Optional[os.PathLike] = None, preset: Optional[str] = None,
               overrides: Optional[Dict[str, Any]] = None, max_trials: int = MAX_TRIALS) -> Plan:
    """Read (presets, ``set``, ``--set``) and plan a study mapping; see :func:`read_study`."""
    return Plan.of(read_study(data, base_dir, preset, overrides), max_trials)


def parse_study(data: Any, base_dir: Optional[os.PathLike] = None, preset: Optional[str] = None,
                overrides: Optional[Dict[str, Any]] = None) -> StudySpec:
    """The validated StudySpec of a study mapping (planned once to check it whole)."""
    return plan_study(data, base_dir, preset, overrides).study


def load_plan(file: os.PathLike, preset: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> Plan:
    return plan_study(load_yaml(str(file)), Path(file).parent, preset, overrides)


def load_study(file: os.PathLike, preset: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> StudySpec:
    return load_plan(file, preset, overrides).study


def describe_plans(plans: List[TrialPlan]) -> str:
    lines = []
    for p in plans:
        label = ", ".join(f"{k}={v}" for k, v in p.labels.items())
        o = p.spec.optimization
        budget = f"{o.iteration_limit} it"
        if o.samples is not None:
            budget = f"{o.samples:,} samples = {o.iteration_limit} it"
        if o.time_budget_s is not None:
            budget = f"{o.time_budget_s:g} s of {o.clock} time, at most {budget}"
        workers = f" x {o.workers} workers" if o.workers > 1 else ""
        lines.append(f"  {p.trial_id}: {label} (batch {o.batch_size}{workers} x acc {o.accumulation.d}/{o.accumulation.g}, {budget})")
    return "\n".join(lines)


