"""One row per trial of a study directory, as a pandas DataFrame (and summary.csv/json).

Read-only over the study folder (through harness.store's StudyRecord and TrialRecord) so
it works while a study runs, after it was killed, and on a copy of the results; imports
neither torch nor the variants. Columns:

    trial_id, phase (grid | search | finalist), status (completed | diverged | failed |
    stopped | running | pending), variant, seed, objective (searches),
    config.<dotted path>     every field of the resolved trial config (lists as JSON)
    best.<metric>, final.<metric>, protocol.<metric> (JSON: extractor, weights hash, n ...)
    info.<metric>            JSON: the metric's description, scale, value keys, direction
    direction.<metric>       min | max, as the trial recorded it with its values
    metric.<key>             the metric that reported the value key (protocol.<that metric>)
    best_iter.<metric>, best_wall_s.<metric>, best_train_s.<metric>, best_compute_s.<metric>
                             when the best was first reached
    iterations, samples_seen, wall_s, train_s (wall minus evaluation and checkpoints),
    compute_s (the compute clock: process CPU seconds or CUDA-event GPU seconds of the
    training steps), clock (what a time budget counted), evaluations (how many),
    host_load_max (highest 1-minute load average in the trial's rows), host_cpus,
    eval_s, effective_batch, effective_batch_g, peak_rss_mb, peak_cuda_mb, attempts,
    error, budget (which budget ended it: iterations | samples | seconds), labels (JSON)
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Optional

from harness.store import StudyRecord, TrialRecord

BASE_COLUMNS = ["trial_id", "phase", "status", "variant", "seed", "objective", "iterations", "samples_seen",
                "wall_s", "train_s", "compute_s", "clock", "evaluations", "host_load_max", "host_cpus", "eval_s", "effective_batch", "effective_batch_g", "peak_rss_mb",
                "peak_cuda_mb", "attempts", "budget", "error", "labels"]


def flatten(obj: Any, prefix: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        out[prefix] = json.dumps(obj, sort_keys=True)
    else:
        out[prefix] = obj
    return out


# Value keys whose higher values are better, for rows written before each value carried
# its direction (newer rows say it themselves: ``higher_is_better`` in metrics.jsonl).
_HIGHER_IS_BETTER_PREFIXES = ("precision", "recall", "density", "coverage", "is", "prdc")


def fallback_direction(name: str) -> str:
    """'min' or 'max' of a metric value key, from its name (records that predate directions)."""
    return "max" if name.split("_")[0] in _HIGHER_IS_BETTER_PREFIXES else "min"


def search_key(metric: str, report: Dict[str, Any]) -> str:
    """The value key a study's ``search.metric`` names in a trial's report: itself, or the
    one key its metric reported (as harness.study.search.objective_key resolves it)."""
    if metric in (report.get("metrics") or {}):
        return metric
    own = [k for k, m in (report.get("metric_of") or {}).items() if m == metric]
    return own[0] if len(own) == 1 else metric


def _search_settings(study: StudyRecord) -> Optional[Dict[str, Any]]:
    search = (study.read_study() or {}).get("search")
    if not search:
        return None
    return {"metric": search["metric"], "objective": search.get("objective", "best"), "mode": search.get("mode")}


def trial_row(study: StudyRecord, record: TrialRecord, search: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    record_dir = record.root
    info = study.trial_info(record_dir.name)
    status = record.status() or {}
    reports = record.reports()
    last = reports[-1] if reports else {}
    evals = [r for r in reports if "metrics" in r]
    last_eval = evals[-1] if evals else {}
    labels = info.get("labels", {})
    row: Dict[str, Any] = {
        "trial_id": info.get("trial_id", record_dir.name),
        "phase": info.get("phase", ""),
        "status": status.get("status", "running" if reports else "pending"),
        "variant": labels.get("variant"),
        "seed": None,
        "iterations": int(status.get("iteration", last.get("iteration", 0))),
        "samples_seen": last.get("samples_seen"),
        "wall_s": last.get("wall_s"),
        "train_s": last.get("train_s"),
        "compute_s": last.get("compute_s"),
        "clock": last.get("clock"),
        "evaluations": len(evals),
        "host_load_max": max((r["host_load"] for r in reports if isinstance(r.get("host_load"), (int, float))),
                             default=None),
        "host_cpus": last.get("host_cpus"),
        "eval_s": last.get("eval_s"),
        "effective_batch": last.get("effective_batch"),
        "effective_batch_g": last.get("effective_batch_g"),
        "peak_rss_mb": max((r.get("peak_rss_mb", 0.0) for r in reports), default=None),
        "peak_cuda_mb": max((r["peak_cuda_mb"] for r in reports if "peak_cuda_mb" in r), default=None),
        "attempts": len(study.attempts(record_dir.name)),
        "budget": status.get("budget"),
        "error": status.get("error"),
        "labels": json.dumps(labels, sort_keys=True),
        # what computed the last evaluation's features (environment, not protocol)
        "eval_backend": ",".join(sorted({str(env.get("backend")) for env in
                                         (last_eval.get("eval_environment") or {}).values()})) or None,
    }
    config = record.read_config()
    if config:
        row["seed"] = config.get("seed")
        row.update(flatten(config, "config"))
    for name, value in (last_eval.get("best") or {}).items():
        row[f"best.{name}"] = value
    for name, value in (last_eval.get("metrics") or {}).items():
        row[f"final.{name}"] = value
    for name, proto in (last_eval.get("protocol") or {}).items():
        row[f"protocol.{name}"] = json.dumps(proto, sort_keys=True)
    for name, meta in (last_eval.get("metric_info") or {}).items():
        row[f"info.{name}"] = json.dumps(meta, sort_keys=True)
    higher = last_eval.get("higher_is_better") or {}
    for name in (last_eval.get("metrics") or {}):
        row[f"direction.{name}"] = ("max" if higher[name] else "min") if name in higher else fallback_direction(name)
    for name, metric in (last_eval.get("metric_of") or {}).items():
        row[f"metric.{name}"] = metric  # the metric that reported this value key (its protocol's name)
    for name, value in (last_eval.get("best") or {}).items():
        reached = _first_reaching(evals, name, value)
        if reached is not None:
            row[f"best_iter.{name}"] = reached.get("iteration")
            row[f"best_wall_s.{name}"] = reached.get("wall_s")
            row[f"best_train_s.{name}"] = reached.get("train_s")
            row[f"best_compute_s.{name}"] = reached.get("compute_s")
    if search is not None:
        from harness.study.search import objective_value

        metric = search_key(search["metric"], last_eval)
        mode = search["mode"] or row.get(f"direction.{metric}") or fallback_direction(metric)
        row["objective"] = objective_value(last_eval, metric, search["objective"], mode)
    else:
        row["objective"] = None
    return row


def _first_reaching(evals: List[Dict[str, Any]], name: str, best: Any) -> Optional[Dict[str, Any]]:
    """The first evaluation whose value of ``name`` is the trial's best (iterations and time
    to reach the best)."""
    if not isinstance(best, (int, float)) or not math.isfinite(best):
        return None
    for report in evals:
        value = (report.get("metrics") or {}).get(name)
        if isinstance(value, (int, float)) and math.isclose(value, best, rel_tol=1e-12, abs_tol=0.0):
            return report
    return None


def summarize(root: os.PathLike):
    """The summary DataFrame of study directory ``root`` (planned trials without a record
    yet appear as ``pending``)."""
    import pandas as pd

    study = StudyRecord(root)
    if not study.exists():
        from harness.errors import ConfigError

        raise ConfigError("DIR", str(root), f"a study results directory (one holding {study.STUDY_FILE})")
    search = _search_settings(study)
    rows: List[Dict[str, Any]] = []
    seen = set()
    for record in study.trial_records():
        row = trial_row(study, record, search)
        rows.append(row)
        seen.add(row["trial_id"])
    for planned in study.read_plan():
        if planned["trial_id"] not in seen:
            rows.append({"trial_id": planned["trial_id"], "phase": planned["phase"], "status": "pending",
                         "variant": planned["labels"].get("variant"), "seed": planned["labels"].get("seed"),
                         "labels": json.dumps(planned["labels"], sort_keys=True), "attempts": 0})
    order = {"grid": 0, "search": 1, "finalist": 2}
    rows.sort(key=lambda r: (order.get(r.get("phase", ""), 3), r["trial_id"]))
    frame = pd.DataFrame(rows)
    if not len(frame):
        return pd.DataFrame(columns=BASE_COLUMNS)
    first = [c for c in BASE_COLUMNS if c in frame.columns]
    metric_cols = sorted(c for c in frame.columns
                         if c.startswith(("best.", "final.", "protocol.", "info.", "direction.", "metric.", "best_iter.", "best_wall_s.",
                                          "best_train_s.", "best_compute_s.")))
    config_cols = [c for c in frame.columns if c.startswith("config.")]
    rest = [c for c in frame.columns if c not in first + metric_cols + config_cols]
    return frame[first + metric_cols + rest + config_cols]


def write_summary(root: "os.PathLike | StudyRecord"):
    """Write summary.csv and summary.json (atomically; published when the study is on
    object storage) and return the DataFrame."""
    study = root if isinstance(root, StudyRecord) else StudyRecord(root)
    frame = summarize(study.root)
    study.write_output(study.summary_csv, frame.to_csv(index=False))
    study.write_output(study.summary_json, to_json(frame))
    return frame


def to_json(frame) -> str:
    records = frame.to_dict(orient="records")
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in records]
    return json.dumps(clean, indent=1, default=str, allow_nan=True) + "\n"
