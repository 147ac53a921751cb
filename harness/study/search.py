"""The search half of a study: Optuna's define-by-run space, ASHA's settings, finalists.

Functions of a planned study (``harness.study.planning.Plan`` calls them with its base);
Ray and Optuna objects are built in :mod:`harness.runner` and :mod:`harness.tune_adapter`.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

from harness.errors import ConfigError
from harness.spec import TrialSpec, get_dotted
from harness.study.planning import TrialPlan, base_spec, make_trial
from harness.study.schema import StudySpec, choice_label

_MISSING = object()


def objective_key(metric: str, base: TrialSpec) -> Tuple[str, bool]:
    """The value key a search optimizes and whether higher is better: ``metric`` names a
    key reported by one of the base's eval.metrics, or a metric that reports exactly one."""
    from harness.metrics import value_keys

    keys = value_keys(base.eval.metrics, base.eval.metric_options)
    if metric in keys:
        return metric, keys[metric]["higher_is_better"]
    own = [k for k, v in keys.items() if v["metric"] == metric]
    if len(own) == 1:
        return own[0], keys[own[0]]["higher_is_better"]
    if own:
        raise ConfigError("search.metric", metric, f"one value key of {metric}, which reports {len(own)}: "
                          + ", ".join(own))
    raise ConfigError("search.metric", metric, "a value key reported by the base's eval.metrics ("
                      + (", ".join(keys) or "none set") + ")")


def metric_direction(metric: str, base: TrialSpec) -> str:
    """'min' or 'max' for the search objective ``metric`` (imports the metric registry)."""
    return "max" if objective_key(metric, base)[1] else "min"


def search_mode(study: StudySpec, base: TrialSpec) -> str:
    assert study.search is not None
    return study.search.mode or metric_direction(study.search.metric, base)


def check_search(study: StudySpec, base: TrialSpec) -> None:
    s = study.search
    assert s is not None
    objective_key(s.metric, base)
    spec0 = make_trial(study, base, {}, study.seeds[0], "search (base config)")
    if s.scheduler.name == "asha":
        if spec0.eval.every <= 0:
            raise ConfigError("base.eval.every", spec0.eval.every,
                              "an evaluation interval > 0 (ASHA compares trials at their evaluations)")
        time_attr, horizon, grace = asha_settings(study, spec0)
        if grace >= horizon:
            raise ConfigError("search.scheduler.grace_period", grace, f"a value < the budget ({horizon} "
                              f"{time_attr})")
    names = list(s.space)
    for i, (name, param) in enumerate(s.space.items()):
        for cond, allowed in param.when.items():
            if cond in names[:i]:
                if s.space[cond].type == "categorical":
                    labels = [choice_label(c) for c in s.space[cond].choices]
                    if not any(choice_label(c) in labels for c in _candidates(allowed)):
                        raise ConfigError(f"search.space.{name}.when.{cond}", allowed,
                                          "one of that parameter's choices: " + ", ".join(map(str, labels)))
            elif cond in names:
                raise ConfigError(f"search.space.{name}.when.{cond}", cond,
                                  "a parameter listed before this one (conditions read earlier parameters)")
            elif get_dotted(spec0.to_dict(), cond, _MISSING) is _MISSING:
                raise ConfigError(f"search.space.{name}.when.{cond}", cond,
                                  "an earlier parameter or a path of the base config")
        # Every bound / choice must make a valid trial on its own (conditions aside).
        for value in param.extremes():
            overrides = {}
            for cond, allowed in param.when.items():
                if cond in names[:i]:
                    labels = [choice_label(c) for c in s.space[cond].choices or []]
                    overrides[cond] = next((c for c in _candidates(allowed) if choice_label(c) in labels),
                                           allowed)
            overrides[name] = value
            make_trial(study, base, overrides, study.seeds[0], f"search.space.{name}={choice_label(value)}")


def scheduler_horizon(study: StudySpec, spec: TrialSpec) -> Tuple[str, float]:
    """(time attribute, budget) ASHA measures trials by: iterations, or the seconds of the
    trials' clock (compute_s or train_s) under a seconds-only budget."""
    o = spec.optimization
    if o.time_budget_s is not None and (study.fixed_budget is None or (
            study.fixed_budget.iterations is None and study.fixed_budget.samples is None)):
        return ("compute_s" if o.clock == "compute" else "train_s"), float(o.time_budget_s)
    return "iteration", float(o.iteration_limit)


def asha_settings(study: StudySpec, spec: Optional[TrialSpec] = None) -> Tuple[str, float, float]:
    """(time attribute, max_t, grace period) for ASHA; the grace period defaults to one
    evaluation interval."""
    assert study.search is not None
    if spec is None:
        spec = make_trial(study, base_spec(study), {}, study.seeds[0], "search (base config)")
    time_attr, horizon = scheduler_horizon(study, spec)
    grace = study.search.scheduler.grace_period
    return time_attr, horizon, float(grace if grace is not None else spec.eval.every)


def suggest(study: StudySpec, trial: Any, base_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Define-by-run search space: ask ``trial`` (an Optuna trial) for each parameter whose
    ``when`` holds; return the config overrides (choices decoded back to their values)."""
    s = study.search
    assert s is not None
    overrides: Dict[str, Any] = {}
    base = base_config if base_config is not None else base_spec(study).to_dict()
    for name, p in s.space.items():
        if not _condition_holds(p.when, overrides, base):
            continue
        if p.type == "float":
            value = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        elif p.type == "int":
            value = trial.suggest_int(name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            labels = [choice_label(c) for c in p.choices]
            label = trial.suggest_categorical(name, labels)
            value = p.choices[labels.index(label)]
        overrides[name] = value
    return overrides


def _candidates(allowed: Any) -> List[Any]:
    """A ``when`` value: the value itself, or (a list) any of its items."""
    return [allowed] + (list(allowed) if isinstance(allowed, list) else [])


def _condition_holds(when: Dict[str, Any], overrides: Dict[str, Any], base: Dict[str, Any]) -> bool:
    for cond, allowed in when.items():
        current = overrides[cond] if cond in overrides else get_dotted(base, cond, None)
        if choice_label(current) not in {choice_label(c) for c in _candidates(allowed)}:
            return False
    return True


def search_trial(study: StudySpec, number: int, overrides: Dict[str, Any],
                 base: Optional[TrialSpec] = None) -> TrialPlan:
    spec = make_trial(study, base or base_spec(study), overrides, study.seeds[0], f"search trial {number}")
    labels = {k: choice_label(v) for k, v in overrides.items()}
    return TrialPlan(TrialPlan.search_id(number), "search", {**labels, "seed": study.seeds[0]}, spec, dict(overrides))


def finalist_trials(study: StudySpec, ranked: List[Tuple[str, Dict[str, Any]]],
                    base: Optional[TrialSpec] = None) -> List[TrialPlan]:
    """Plans re-running each ranked (search trial id, overrides) with the finalist seeds."""
    s = study.search
    assert s is not None and s.finalists is not None
    plans = []
    base = base or base_spec(study)
    for rank, (source_id, overrides) in enumerate(ranked[: s.finalists.k]):
        for seed in s.finalists.seeds:
            spec = make_trial(study, base, overrides, seed, f"finalist {rank} ({source_id})")
            labels = {k: choice_label(v) for k, v in overrides.items()}
            plans.append(TrialPlan(f"final-{rank}-s{seed}", "finalist",
                                   {**labels, "rank": rank, "from": source_id, "seed": seed}, spec, dict(overrides)))
    if s.finalists.baseline:
        for seed in s.finalists.seeds:
            spec = make_trial(study, base, {}, seed, "baseline (the base config)")
            plans.append(TrialPlan(f"final-base-s{seed}", "finalist", {"rank": "base", "from": "base", "seed": seed},
                                   spec, {}))
    return plans


def objective_value(report: Optional[Dict[str, Any]], metric: str, objective: str, mode: str) -> float:
    """The number the search optimizes, from a trial's latest report: the best value so far
    (or the last one); a trial without one scores the worst possible value."""
    worst = math.inf if mode == "min" else -math.inf
    if not report:
        return worst
    source = report.get("best" if objective == "best" else "metrics") or {}
    value = source.get(metric)
    if value is None or not math.isfinite(float(value)):
        return worst
    return float(value)

