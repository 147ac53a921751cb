"""Is a comparison fair? The warnings a table, leaderboard, report or study run prints.

A comparison pools finished trials (configurations × seeds). It is unfair, and every
reader of it is told so, when:

- ``spread``: the trials ran under a time budget and their iterations or samples seen
  differ by more than :data:`SPREAD` (max/min − 1). Under a wall clock that is the
  machine's load as much as the method; under the compute clock it is each method's own
  cost per step (equal compute is then the point, but the reader must know that the
  methods trained for different numbers of steps). Iteration and samples budgets make
  trials equal by construction and are not checked;
- ``evaluations``: a trial was evaluated fewer than :data:`MIN_EVALUATIONS` times — its
  best value is a single point, not the best of a curve;
- ``load``: the host's 1-minute load average during a trial exceeded its cores by more
  than :data:`LOAD_TOLERANCE` (every report row records ``host_load`` and
  ``host_cpus``): the trials did not get the cores the study reserved. The tolerance
  leaves room for Ray's own processes and the load average's lag.

Reads only summary columns (no torch); old records without the columns are not flagged.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List

SPREAD = 0.20
MIN_EVALUATIONS = 3
LOAD_TOLERANCE = 1.25


def _num(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _ids(rows, limit: int = 4) -> str:
    ids = [str(t) for t in rows["trial_id"]]
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _spread(rows, label: str) -> List[str]:
    if "config.optimization.time_budget_s" not in rows.columns:
        return []
    timed = rows[rows["config.optimization.time_budget_s"].notna() & (rows["status"] == "completed")]
    if len(timed) < 2:
        return []
    out = []
    for column, what in (("iterations", "iterations"), ("samples_seen", "samples seen")):
        if column not in timed.columns:
            continue
        values = [_num(v) for v in timed[column]]
        finite = [v for v in values if math.isfinite(v) and v > 0]
        if len(finite) < 2 or max(finite) / min(finite) - 1.0 <= SPREAD:
            continue
        per: Dict[str, List[float]] = {}
        for key, value in zip(timed[label], values):
            per.setdefault(str(key), []).append(value)
        ranges = "; ".join(f"{k} {min(v):.0f}" + (f"–{max(v):.0f}" if max(v) != min(v) else "")
                           for k, v in per.items())
        clocks = sorted({str(c) for c in timed.get("config.optimization.clock", []) if isinstance(c, str)}) or ["wall"]
        why = ("a wall-clock budget: the machine's other load decides part of it" if clocks == ["wall"] else
               "an equal compute budget: each method's own cost per step (and packing on a shared GPU)"
               if clocks == ["compute"] else "budgets on different clocks")
        out.append(f"{what} differ by {100 * (max(finite) / min(finite) - 1):.0f} % (more than "
                   f"{100 * SPREAD:.0f} %) between trials pooled under an equal time budget — {why}: {ranges}. "
                   "Compare at equal samples (fixed_budget.samples) or read the iterations column.")
        break  # iterations and samples move together at a held batch: say it once
    return out


def _evaluations(rows) -> List[str]:
    if "evaluations" not in rows.columns:
        return []
    few = rows[(rows["status"] == "completed") & rows["evaluations"].notna()
               & (rows["evaluations"].astype(float) < MIN_EVALUATIONS)]
    if not len(few):
        return []
    counts = sorted({int(v) for v in few["evaluations"]})
    return [f"{len(few)} trial(s) were evaluated fewer than {MIN_EVALUATIONS} times ({'/'.join(map(str, counts))}: "
            f"{_ids(few)}): a best value from so few points is not the best of a curve — evaluate more often "
            "(eval.every) or train longer."]


def _load(rows) -> List[str]:
    if "host_load_max" not in rows.columns or "host_cpus" not in rows.columns:
        return []
    load, cpus = rows["host_load_max"].map(_num), rows["host_cpus"].map(_num)
    busy = rows[(load > cpus * LOAD_TOLERANCE) & cpus.notna()]
    if not len(busy):
        return []
    peak = float(busy["host_load_max"].astype(float).max())
    clocks = {str(c) for c in busy.get("config.optimization.clock", [])}
    timed = "config.optimization.time_budget_s" in busy.columns and busy["config.optimization.time_budget_s"].notna().any()
    effect = ("under a wall-clock budget they trained less" if timed and "wall" in clocks else
              "their budget (compute or samples) was not bent, but their times are not comparable")
    return [f"the host was oversubscribed during {len(busy)} trial(s) ({_ids(busy)}): 1-minute load average up to "
            f"{peak:.1f} on {int(float(busy['host_cpus'].iloc[0]))} cores (> {LOAD_TOLERANCE:g} × cores) — other "
            f"work shared the cores the study reserved; {effect}."]


def concerns(rows, label: str = "cell") -> List[str]:
    """What makes the comparison of the trials in ``rows`` (summary rows, one phase) unfair,
    one sentence each; empty when nothing does. ``label`` names a configuration's column."""
    if rows is None or not len(rows):
        return []
    if label not in rows.columns:
        label = "trial_id"
    return _spread(rows, label) + _evaluations(rows) + _load(rows)
