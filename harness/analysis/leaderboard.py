"""A leaderboard across studies: configurations ranked by one metric under one protocol,
with what each cost and a quality-per-cost rank.

Rows are (study, configuration) pairs pooled over seeds (finished trials of each study's
default phase: finalists, else the grid, else the search). Rows measured under different
protocols (another extractor, weights, sample count or reference set) are refused with
the differing fields named — a leaderboard that mixes protocols ranks nothing.

Quality per cost: FID and its kin have no zero point, so "FID per GPU-hour" means nothing.
Instead each row gets a Pareto rank on (metric mean, cost per trial), the cost being the
compute clock's seconds (wall seconds of training for records without one). Cost
differences within 5 % are timing noise, not a ranking: A dominates B only if A is at
least as good and more than 5 % cheaper, or better and at most 5 % dearer
(:func:`harness.analysis.stats.dominates`). Rank 1 = dominated by no other row; rank 2 =
only by rank-1 rows; and so on. When every study ran under the same fixed budget, the
budget is the cost: rows are ranked by quality alone and get no Pareto rank. The rule
applied is printed under the table.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import json

from harness.analysis import fairness, stats
from harness.analysis.results import FINISHED, StudyResults, metric_direction
from harness.analysis.render import Cell, Table, fmt, fmt_count, interval, mean_std
from harness.analysis.tables import check_protocol
from harness.analysis.kinds import table_kind
from harness.analysis.options import AnalysisOptions
from harness.errors import ConfigError

WHICH = ("best", "final")


def leaderboard(studies: Sequence[StudyResults], metric: Optional[str] = None, which: str = "best",
                phase: Optional[str] = None, statuses: Sequence[str] = FINISHED, level: float = 0.95) -> Table:
    import pandas as pd

    if which not in WHICH:
        raise ConfigError("--which", which, "one of " + ", ".join(WHICH))
    if not studies:
        raise ConfigError("DIR", [], "at least one study results directory")
    metric = metric or studies[0].default_metric()
    col = f"{which}.{metric}"
    frames = []
    for res in studies:
        if metric not in res.metrics():
            raise ConfigError("--metric", metric, f"a metric every study measured; {res.name} ({res.root}) has: "
                              + (", ".join(res.metrics()) or "none yet"))
        frames.append(res.rows(phase, statuses))
    rows = pd.concat(frames, ignore_index=True)
    protocol = check_protocol(rows, metric)
    direction = metric_direction(metric, rows)
    records: List[Dict[str, Any]] = []
    for (study, cell), g in rows.groupby(["study", "cell"], sort=False):
        s = stats.summarize(g[col], level=level)
        if s.n == 0:
            continue
        mean = lambda c: stats.summarize(g[c] if c in g else []).mean  # noqa: E731
        records.append({"study": study, "configuration": cell, "n": s.n, "mean": s.mean, "std": s.std,
                        "ci_low": s.ci_low, "ci_high": s.ci_high, "train_s": mean("train_s"),
                        "compute_s": mean("compute_s"), "iterations": mean("iterations"),
                        "train_s_to_best": mean(f"best_train_s.{metric}"), "wall_s": mean("wall_s"),
                        "cpu_h": mean("cpu_h"), "gpu_h": mean("gpu_h"), "samples_seen": mean("samples_seen")})
    records.sort(key=lambda r: r["mean"] if direction == "min" else -r["mean"])
    budget = _common_budget(studies)
    cost = "compute_s" if records and all(r["compute_s"] == r["compute_s"] for r in records) else "train_s"
    if budget is None:
        pareto = stats.pareto_ranks([r["mean"] for r in records], [r[cost] for r in records],
                                    higher_is_better=direction == "max")
    else:
        pareto = [None] * len(records)
    for rank, (rec, p) in enumerate(zip(records, pareto), start=1):
        rec["rank"], rec["pareto_rank"] = rank, p
    pct = f"{level * 100:g}%"
    columns = ["rank", "study", "configuration", "n", f"{col} (mean ± std)", f"{pct} CI", "iterations", "compute s",
               "train s", "train s to best", "CPU h", "GPU h", "samples seen", "quality/cost (Pareto rank)"]
    table_rows = [[Cell(str(r["rank"])), Cell(r["study"]), Cell(r["configuration"]), Cell(str(r["n"])),
                   Cell(mean_std(r["mean"], r["std"]), bold=r["rank"] == 1), Cell(interval(r["ci_low"], r["ci_high"])),
                   Cell(fmt_count(r["iterations"])), Cell(fmt(r["compute_s"])), Cell(fmt(r["train_s"])),
                   Cell(fmt(r["train_s_to_best"])), Cell(fmt(r["cpu_h"])), Cell(fmt(r["gpu_h"])),
                   Cell(fmt_count(r["samples_seen"])),
                   Cell(fmt_count(r["pareto_rank"]), bold=r["pareto_rank"] == 1)] for r in records]
    better = "lower" if direction == "min" else "higher"
    proto = ", ".join(f"{k}={v}" for k, v in sorted((protocol or {}).items()) if k != "reference")
    notes = [f"{col}, {better} is better, one protocol: {proto or 'not recorded'}"
             + (f", reference {str(protocol['reference'])[:12]}" if protocol and "reference" in protocol else "") + ".",
             "Costs are means per trial; CPU h / GPU h = wall-clock hours × the CPUs / GPUs the study reserved per "
             "trial; compute s = the compute clock (CPU seconds of the trial process, or CUDA-event GPU seconds).",
             _rule(budget, cost)]
    data = pd.DataFrame(records, columns=["rank", "study", "configuration", "n", "mean", "std", "ci_low", "ci_high",
                                          "iterations", "compute_s", "train_s", "train_s_to_best", "wall_s", "cpu_h",
                                          "gpu_h", "samples_seen", "pareto_rank"])
    return Table(f"Leaderboard: {col}", columns, table_rows, data, notes,
                 align=["r", "l", "l"] + ["r"] * 11, name="leaderboard", warnings=fairness.concerns(rows))


def _common_budget(studies: Sequence[StudyResults]) -> Optional[Dict[str, Any]]:
    """The fixed budget every study ran under, when they all ran under the same one."""
    budgets = {json.dumps(res.study.get("fixed_budget"), sort_keys=True) for res in studies}
    if len(budgets) != 1:
        return None
    return json.loads(budgets.pop())


def _rule(budget: Optional[Dict[str, Any]], cost: str) -> str:
    if budget is not None:
        shown = {k: v for k, v in budget.items() if v is not None and not (k == "clock" and budget.get("seconds") is None)}
        spent = ", ".join(f"{k} {v}" for k, v in sorted(shown.items()))
        return (f"Rank rule: every row ran under the same fixed budget ({spent}): the budget is the cost, so rows "
                "are ranked by quality alone (no Pareto rank).")
    what = "compute s" if cost == "compute_s" else "train s (no compute clock recorded)"
    return (f"Rank rule: Pareto rank on quality and cost ({what}) with a {stats.COST_MARGIN:.0%} margin — A dominates "
            f"B only if A is at least as good and more than {stats.COST_MARGIN:.0%} cheaper, or better and at most "
            f"{stats.COST_MARGIN:.0%} dearer; cost differences within the margin are ties. Rank 1 = dominated by no "
            "other row. Costs compare fairly only between studies run on the same hardware.")


@table_kind("leaderboard", "the study's configurations ranked, with cost and Pareto rank", order=40)
def _leaderboard(results: StudyResults, o: AnalysisOptions) -> Table:
    return leaderboard([results], metric=o.metric, phase=o.phase, level=o.level)
