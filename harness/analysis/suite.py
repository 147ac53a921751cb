"""A benchmark suite's leaderboard: configurations ranked across datasets, as the low-shot
papers' tables are read (``ganbench table DIR --kind suite``).

A study whose grid or variants vary the dataset (``dataset`` or ``dataset.*`` labels, e.g.
``studies/lowshot_benchmark.yaml``) is a suite. Its rows are split by dataset; within each
dataset every configuration (the cell without its dataset part) is pooled over seeds —
mean and confidence interval — and ranked (ties share the mean of their ranks); the
leaderboard orders configurations by their mean rank over the datasets they ran on.

Every dataset is its own reference set, so each is checked for ONE protocol of the metric
(a mix inside a dataset is refused, naming the difference), and its real-vs-real floor,
when the study computed it, is shown beside its values. Values across datasets are never
averaged: only ranks are.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple

from harness.analysis import fairness, stats
from harness.analysis.kinds import table_kind
from harness.analysis.options import AnalysisOptions
from harness.analysis.render import Cell, Table, fmt, interval, mean_std
from harness.analysis.results import StudyResults, cell_of, metric_direction, short_value
from harness.analysis.tables import check_protocol
from harness.errors import ConfigError


def _is_dataset(key: str) -> bool:
    return key == "dataset" or key.startswith("dataset.")


def _split(labels_json: Any) -> Tuple[str, str]:
    """(dataset, configuration) of one row's labels."""
    try:
        labels = json.loads(labels_json) if isinstance(labels_json, str) else dict(labels_json or {})
    except json.JSONDecodeError:
        labels = {}
    data = {k: v for k, v in labels.items() if _is_dataset(k)}
    rest = {k: v for k, v in labels.items() if not _is_dataset(k)}
    whole = data.get("dataset")
    if isinstance(whole, str) and whole.startswith("{"):
        whole = json.loads(whole)
    if set(data) == {"dataset"} and isinstance(whole, dict):  # a whole dataset section: its name, subset, kwargs
        kwargs = whole.get("kwargs") or {}
        name = (str(whole.get("name", "?")) + (f"[:{whole['limit']}]" if whole.get("limit") else "")
                + (f"({short_value(kwargs)})" if kwargs else ""))
    else:
        name = ", ".join(f"{k}={short_value(v)}" for k, v in sorted(data.items()))
    return name, cell_of(rest, "")


def is_suite(results: StudyResults, phase: Optional[str] = None) -> bool:
    """Whether the study's planned trials span more than one dataset."""
    frame = results.frame
    if not len(frame) or "labels" not in frame:
        return False
    return len({_split(v)[0] for v in frame["labels"]} - {""}) > 1


def ranks(means: List[float], higher_is_better: bool) -> List[float]:
    """1 = best; tied values share the mean of the ranks they span."""
    order = sorted(range(len(means)), key=lambda i: -means[i] if higher_is_better else means[i])
    out = [0.0] * len(means)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and means[order[j + 1]] == means[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def suite_table(results: StudyResults, metric: Optional[str] = None, which: str = "best",
                phase: Optional[str] = None, level: float = 0.95) -> Table:
    import pandas as pd

    rows = results.rows(phase)
    if not is_suite(results, phase):
        raise ConfigError("--kind", "suite", "a study whose grid or variants vary the dataset (dataset or "
                          f"dataset.* labels); {results.name} runs on one")
    metric = metric or results.default_metric()
    col = f"{which}.{metric}"
    if col not in rows:
        raise ConfigError("--metric", metric, "a metric the study measured: " + ", ".join(results.metrics()))
    higher = metric_direction(metric, rows) == "max"
    split = [_split(v) for v in rows["labels"]]
    rows = rows.assign(_dataset=[d for d, _ in split], _config=[c for _, c in split])
    datasets = list(dict.fromkeys(rows["_dataset"]))
    configs = list(dict.fromkeys(rows["_config"]))
    per: Dict[Tuple[str, str], Any] = {}
    floors: Dict[str, Optional[Dict[str, Any]]] = {}
    protocols: Dict[str, Any] = {}
    rank_of: Dict[Tuple[str, str], float] = {}
    for ds in datasets:
        sub = rows[rows["_dataset"] == ds]
        protocols[ds] = check_protocol(sub, metric, field=f"--metric (dataset {ds})")
        floors[ds] = results.floor(metric, sub)
        here = [c for c in configs if (sub["_config"] == c).any()]
        for c in here:
            per[(ds, c)] = stats.summarize(sub.loc[sub["_config"] == c, col], level=level)
        valid = [c for c in here if per[(ds, c)].n]
        for c, r in zip(valid, ranks([per[(ds, c)].mean for c in valid], higher)):
            rank_of[(ds, c)] = r
    records = []
    for c in configs:
        mine = [rank_of[(ds, c)] for ds in datasets if (ds, c) in rank_of]
        records.append({"configuration": c, "mean_rank": sum(mine) / len(mine) if mine else float("nan"),
                        "datasets": len(mine)})
    records.sort(key=lambda r: (r["mean_rank"] != r["mean_rank"], r["mean_rank"]))
    pct = f"{level * 100:g}%"
    columns = ["rank", "configuration", "mean rank", "datasets"] + [f"{ds}: {metric} (mean ± std) [{pct} CI]"
                                                                   for ds in datasets]
    table_rows, data = [], []
    for place, rec in enumerate(records, start=1):
        cells = [Cell(str(place)), Cell(rec["configuration"]), Cell(fmt(rec["mean_rank"]), bold=place == 1),
                 Cell(str(rec["datasets"]))]
        for ds in datasets:
            s = per.get((ds, rec["configuration"]))
            if s is None or not s.n:
                cells.append(Cell("—"))
                continue
            best = rank_of.get((ds, rec["configuration"])) == 1
            cells.append(Cell(f"{mean_std(s.mean, s.std)} {interval(s.ci_low, s.ci_high)} "
                              f"(#{fmt(rank_of[(ds, rec['configuration'])])}, n={s.n})", bold=best))
            data.append({"configuration": rec["configuration"], "dataset": ds, "n": s.n, "mean": s.mean,
                         "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high,
                         "rank": rank_of[(ds, rec["configuration"])], "mean_rank": rec["mean_rank"]})
        table_rows.append(cells)
    if any(floors.values()):
        row = [Cell("—"), Cell("real vs real (floor)"), Cell(""), Cell("")]
        for ds in datasets:
            f = floors[ds]
            row.append(Cell(f"{mean_std(f['mean'], f['std'])} ({f['splits']} splits)" if f else "—"))
        table_rows.append(row)
    better = "higher" if higher else "lower"
    notes = [f"{col}, {better} is better; each configuration pooled over seeds within a dataset and ranked there "
             "(#rank; ties share the mean rank); rows ordered by the mean of their ranks over the datasets (equal "
             "means keep the study's order). "
             "Values are never averaged across datasets.",
             "One protocol per dataset (its own training images are the reference set): "
             + "; ".join(f"{ds}: " + (", ".join(f"{k}={v}" for k, v in sorted((protocols[ds] or {}).items())
                                                if k not in ("reference", "seed")) or "not recorded")
                         for ds in datasets) + "."]
    if any(floors.values()):
        notes.append("real vs real (floor): the metric between two random halves of each dataset — a value "
                     "near it is as good as this metric can tell at this sample size.")
    frame = pd.DataFrame(data, columns=["configuration", "dataset", "n", "mean", "std", "ci_low", "ci_high", "rank",
                                        "mean_rank"])
    return Table(f"Suite leaderboard: {col} across {len(datasets)} datasets", columns, table_rows, frame, notes,
                 align=["r", "l", "r", "r"] + ["r"] * len(datasets), name="suite",
                 warnings=fairness.concerns(rows.drop(columns=["_dataset", "_config"])))


@table_kind("suite", "configurations ranked within each dataset, by mean rank across datasets (benchmark suites)",
            order=42, in_report=lambda results, phase: is_suite(results, phase))
def _suite(results: StudyResults, o: AnalysisOptions) -> Table:
    return suite_table(results, metric=o.metric, phase=o.phase, level=o.level)

