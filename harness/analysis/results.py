"""Study results as analysis reads them: the summary rows plus what tables and plots need.

:func:`load_study` reads one study results directory (``harness.summary`` rows, the study
file, the plan) and adds:

    study     the study's name (leaderboards merge several)
    cell      the configuration a row belongs to, seeds pooled: the grid cell / variant
              from its labels ("augment.policy=diffaugment, regularizers=cr"), for a
              finalist "#<rank> <params>", for a search trial its parameters
    cell_order  the plan's order of cells (the first cell is the default baseline)
    cpu_h, gpu_h  wall-clock hours × the CPUs / GPUs the study reserved per trial

It reads only what is on disk, so it works while a study runs (rows still running or
pending are kept with their status; tables use the finished ones) and on a copy.
:func:`curves` reads the per-report series of the chosen trials (metrics, losses, ADA p).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from harness.errors import ConfigError
from harness.store import StudyRecord
from harness.summary import fallback_direction, summarize

# The statuses a table pools by default: a completed trial ran its whole budget; a diverged
# one ran until it blew up (its best-so-far is a real measurement of the protocol, and
# dropping it would flatter a fragile method). Tables count diverged rows in a column.
FINISHED = ("completed", "diverged")
ALL_STATUSES = ("completed", "diverged", "stopped", "failed", "running", "pending")
PHASES = ("grid", "search", "finalist")
_NOT_CELL = ("seed", "rank", "from")


def short_value(value: Any) -> str:
    """A compact, readable label for a grid value or label: regularizer lists become
    "cr(weight=10.0)+r1", an empty list "none"."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, list):
        return "+".join(short_value(v) for v in value) if value else "none"
    if isinstance(value, dict):
        if "name" in value:
            rest = ",".join(f"{k}={short_value(v)}" for k, v in sorted(value.items()) if k != "name")
            return f"{value['name']}({rest})" if rest else str(value["name"])
        return ",".join(f"{k}={short_value(v)}" for k, v in sorted(value.items())) or "{}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def cell_of(labels: Dict[str, Any], phase: str) -> str:
    parts = []
    for key, value in labels.items():
        if key in _NOT_CELL:
            continue
        parts.append(short_value(value) if key == "variant" else f"{key}={short_value(value)}")
    text = ", ".join(parts) or "base"
    if phase == "finalist" and labels.get("rank") == "base":
        return "base (unsearched)"
    if phase == "finalist" and "rank" in labels:
        return f"#{labels['rank']} {text}"
    return text


def metric_direction(name: str, frame: Any = None) -> str:
    """'min' or 'max' for a metric value key, as the trials recorded it with their values
    (the summary's ``direction.<name>`` column of ``frame``); by its name for records that
    predate directions. Needs no metric registry (so no torch)."""
    column = f"direction.{name}"
    if frame is not None and column in getattr(frame, "columns", ()):
        found = sorted(set(frame[column].dropna()))
        if len(found) > 1:
            raise ConfigError("--metric", name, f"a metric whose trials agree on its direction (they say "
                              f"{' and '.join(found)})")
        if found:
            return str(found[0])
    return fallback_direction(name)


def metric_name(frame: Any, key: str) -> str:
    """The metric that reported value ``key`` (``precision_effnet`` -> ``prdc_effnet``), as
    the trials recorded it (``metric.<key>``); the key itself for a metric named like its
    value and for records that predate ``metric_of``."""
    column = f"metric.{key}"
    if frame is not None and column in getattr(frame, "columns", ()):
        found = sorted(set(frame[column].dropna()))
        if len(found) == 1:
            return str(found[0])
    return key


@dataclass
class StudyResults:
    root: Path
    name: str
    study: Dict[str, Any]
    frame: Any                                  # pandas.DataFrame, one row per trial
    cells: List[str] = field(default_factory=list)   # plan order

    @property
    def record(self) -> StudyRecord:
        return StudyRecord(self.root)

    def direction(self, metric: str) -> str:
        """'min' or 'max' for one of this study's metric value keys."""
        return metric_direction(metric, self.frame)

    def floor(self, key: str, rows: Any = None) -> Optional[Dict[str, Any]]:
        """The real-vs-real floor of value ``key`` for ``rows`` (default: every trial):
        ``{"mean", "std", "values", "n", "splits", "dataset"}`` when they all measured it
        against one reference set whose floor the study computed; else None."""
        rows = self.frame if rows is None else rows
        column = f"protocol.{metric_name(self.frame, key)}"
        if column not in getattr(rows, "columns", ()):
            return None
        references = {json.loads(p).get("reference") for p in rows[column].dropna() if isinstance(p, str) and p}
        if len(references) != 1:
            return None
        reference = references.pop()
        for entry in self.record.read_floors():
            found = (entry.get("floor") or {}).get(key)
            if entry.get("fingerprint") == reference and found:
                return {**found, "n": entry.get("n"), "splits": entry.get("splits"), "dataset": entry.get("dataset")}
        return None

    @property
    def kind(self) -> str:
        return "search" if self.study.get("search") else "grid"

    def metrics(self) -> List[str]:
        """Metric keys with a best value in at least one row (in column order)."""
        return [c[len("best."):] for c in self.frame.columns if c.startswith("best.") and self.frame[c].notna().any()]

    def default_phase(self) -> str:
        phases = set(self.frame["phase"].dropna()) if len(self.frame) else set()
        for phase in ("finalist", "grid", "search"):
            if phase in phases:
                return phase
        return "grid"

    def rows(self, phase: Optional[str] = None, statuses: Sequence[str] = FINISHED):
        """The rows of one phase (default: finalists if any, else the grid, else the search)
        with one of ``statuses``."""
        phase = phase or self.default_phase()
        if phase not in PHASES:
            raise ConfigError("--phase", phase, "one of " + ", ".join(PHASES))
        frame = self.frame
        return frame[(frame["phase"] == phase) & frame["status"].isin(list(statuses))]

    def default_metric(self) -> str:
        search = self.study.get("search") or {}
        if search.get("metric") in self.metrics():
            return search["metric"]
        found = self.metrics()
        if not found:
            raise ConfigError("--metric", None, f"a study with evaluated trials ({self.root} has no metric values yet)")
        return found[0]


def load_study(root) -> StudyResults:
    import pandas as pd

    root = Path(root)
    frame = summarize(root)  # raises ConfigError for a directory that is not a study's
    record = StudyRecord(root)
    study = record.read_study() or {}
    resources = study.get("resources") or {}
    cpus = float(resources.get("cpus", 1.0))
    gpus = float(resources.get("gpus", 0.0))
    cells, order = [], {}
    for planned in record.read_plan():
        cell = cell_of(planned.get("labels", {}), planned.get("phase", ""))
        if cell not in order:
            order[cell] = len(order)
            cells.append(cell)
    cell_col = []
    for _, row in frame.iterrows():
        try:
            labels = json.loads(row["labels"]) if isinstance(row.get("labels"), str) else {}
        except json.JSONDecodeError:
            labels = {}
        cell = cell_of(labels, row.get("phase") or "")
        if cell not in order:
            order[cell] = len(order)
            cells.append(cell)
        cell_col.append(cell)
    frame = frame.copy()
    frame.insert(0, "study", study.get("name", root.name))
    frame.insert(3, "cell", cell_col)
    frame["cell_order"] = [order[c] for c in cell_col]
    wall = frame["wall_s"].astype(float) if "wall_s" in frame else None
    if wall is not None:
        device = frame["config.device"] if "config.device" in frame else pd.Series("", index=frame.index)
        on_gpu = device.astype(str).str.startswith("cuda")
        frame["cpu_h"] = wall * cpus / 3600.0
        frame["gpu_h"] = (wall * gpus / 3600.0).where(on_gpu, 0.0) if gpus else 0.0
    return StudyResults(root=root, name=str(study.get("name", root.name)), study=study, frame=frame, cells=cells)


def curves(results: StudyResults, trial_ids: Optional[Sequence[str]] = None):
    """One row per report of each trial: study, trial_id, cell, seed, status, iteration,
    wall_s, train_s, compute_s, samples_seen, ``metric.<m>`` (evaluations only), ``loss.<name>``,
    ``augment.<name>`` (e.g. augment.p of ADA)."""
    import pandas as pd

    frame = results.frame
    if trial_ids is not None:
        frame = frame[frame["trial_id"].isin(list(trial_ids))]
    rows: List[Dict[str, Any]] = []
    for _, trial in frame.iterrows():
        for report in results.record.trial(trial["trial_id"]).reports():
            row: Dict[str, Any] = {"study": results.name, "trial_id": trial["trial_id"], "cell": trial["cell"],
                                   "seed": trial.get("seed"), "status": trial["status"],
                                   "iteration": report.get("iteration"), "wall_s": report.get("wall_s"),
                                   "train_s": report.get("train_s"), "compute_s": report.get("compute_s"),
                                   "samples_seen": report.get("samples_seen")}
            for group in ("metrics", "losses", "augment"):
                prefix = {"metrics": "metric", "losses": "loss", "augment": "augment"}[group]
                for name, value in (report.get(group) or {}).items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        row[f"{prefix}.{name}"] = float(value) if math.isfinite(value) else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def sample_grids(results: StudyResults, trial_id: str) -> List[Path]:
    """A trial's sample grid PNGs, oldest first."""
    return results.record.trial(trial_id).sample_grids()


def pair_grids(results: StudyResults, trial_id: str, space: str) -> List[Path]:
    """A trial's closest generated/training pairs PNGs of feature ``space``, oldest first."""
    return results.record.trial(trial_id).pair_grids(space)

