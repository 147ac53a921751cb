"""Studies: many trials described once — an ablation grid, named variants, or a search.

    schema.py    StudySpec and its parts; presets, ``set`` and ``--set`` (read_study)
    planning.py  the Plan: a study expanded once into validated trials, sources and settings
    search.py    Optuna's define-by-run space, ASHA settings, finalists, the objective

Running a Plan on Ray lives in :mod:`harness.runner`. No Ray import in this package.
"""
from harness.study.planning import (Plan, TrialPlan, base_spec, describe_plans, load_plan, load_study,
                                    make_trial, parse_study, plan, plan_study, planned_sources, source_specs)
from harness.study.schema import (BudgetSpec, FailuresSpec, FinalistsSpec, ParamSpec, ResourcesSpec, SamplerSpec,
                                  SchedulerSpec, SearchSpec, StudySpec, VariantSpec, choice_label, is_study,
                                  read_study)
from harness.study.search import (asha_settings, check_search, finalist_trials, metric_direction, objective_value,
                                  scheduler_horizon, search_mode, search_trial, suggest)

__all__ = ["BudgetSpec", "FailuresSpec", "FinalistsSpec", "ParamSpec", "Plan", "ResourcesSpec", "SamplerSpec",
           "SchedulerSpec", "SearchSpec", "StudySpec", "TrialPlan", "VariantSpec", "asha_settings", "base_spec",
           "check_search", "choice_label", "describe_plans", "finalist_trials", "is_study", "load_plan",
           "load_study", "make_trial", "metric_direction", "objective_value", "parse_study", "plan", "plan_study",
           "planned_sources", "read_study", "scheduler_horizon", "search_mode", "search_trial", "source_specs",
           "suggest"]
