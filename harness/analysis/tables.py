"""Comparison tables over seeds, an ablation table in the shape of a paper's ✓ table, and a
pairwise comparison against a baseline with significance tests.

All three pool the rows of one phase of one study that finished (completed or diverged,
see :data:`harness.analysis.results.FINISHED`) by configuration — the study's cells by
default, or any summary columns (``by=["config.augment.policy"]``) — and refuse to pool a
metric measured under more than one protocol.
"""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness.analysis import fairness, stats
from harness.analysis.results import FINISHED, StudyResults, metric_name, short_value
from harness.analysis.render import Cell, Table, fmt, fmt_count, interval, mean_std
from harness.analysis.kinds import table_kind
from harness.analysis.options import AnalysisOptions
from harness.errors import ConfigError


# ------------------------------------------------------------------------- columns
def resolve_column(frame, name: str, field: str = "--by") -> str:
    for candidate in (name, f"config.{name}"):
        if candidate in frame.columns:
            return candidate
    examples = ["cell", "variant", "seed"] + [c for c in frame.columns if c.startswith("config.")][:4]
    raise ConfigError(field, name, "a summary column, e.g. " + ", ".join(examples) + " (config.<dotted path> or "
                      "the dotted path alone)")


def metric_columns(results: StudyResults, metrics: Optional[Sequence[str]] = None) -> List[str]:
    """``best.<m>`` / ``final.<m>`` columns: a bare metric name gives both."""
    available = results.metrics()
    if not metrics:
        return [f"{kind}.{m}" for m in available for kind in ("best", "final")]
    out = []
    for name in metrics:
        kind, _, metric = name.partition(".") if name.startswith(("best.", "final.")) else ("", "", name)
        if metric not in available:
            raise ConfigError("--metric", name, "a metric the study measured: " + (", ".join(available) or "none yet"))
        out += [f"{kind}.{metric}"] if kind else [f"best.{metric}", f"final.{metric}"]
    return out


def metric_of(column: str) -> str:
    return column.split(".", 1)[1]


# ------------------------------------------------------------------------ protocols
# Protocol fields that vary by design between the seeds of one configuration: the sampling
# seed of the evaluation is part of what the seeds average over, not a different protocol.
PER_SEED_FIELDS = ("seed",)


def protocols(frame, metric: str) -> Dict[str, List[str]]:
    """Distinct protocols (canonical JSON, per-seed fields dropped) of ``metric`` -> the
    studies/trials measured under each."""
    col = f"protocol.{metric_name(frame, metric)}"
    found: Dict[str, List[str]] = {}
    if col not in frame.columns:
        return found
    for _, row in frame.iterrows():
        value = row[col]
        if isinstance(value, str) and value:
            proto = {k: v for k, v in json.loads(value).items() if k not in PER_SEED_FIELDS}
            key = json.dumps(proto, sort_keys=True)
            found.setdefault(key, []).append(f"{row.get('study', '')}/{row['trial_id']}".lstrip("/"))
    return found


def check_protocol(frame, metric: str, field: str = "--metric") -> Optional[Dict[str, Any]]:
    """The single protocol of ``metric`` over ``frame`` (None if none recorded); refuse a mix."""
    found = protocols(frame, metric)
    if len(found) <= 1:
        return json.loads(next(iter(found))) if found else None
    parsed = [json.loads(p) for p in found]
    keys = sorted({k for p in parsed for k in p if len({json.dumps(q.get(k), sort_keys=True) for q in parsed}) > 1})
    lines = []
    for text, proto in zip(found, parsed):
        who = found[text]
        where = ", ".join(who[:3]) + (f" and {len(who) - 3} more" if len(who) > 3 else "")
        lines.append("; ".join(f"{k}={proto.get(k)}" for k in keys) + f" ({where})")
    raise ConfigError(field, metric, f"results measured under ONE protocol; {metric} was measured under "
                      f"{len(found)} that differ in {', '.join(keys)}: " + " | ".join(lines)
                      + " — compare like with like (filter the studies or re-evaluate)")


# --------------------------------------------------------------------------- groups
def _groups(results: StudyResults, rows, by: Sequence[str]) -> List[Tuple[Tuple, Any]]:
    if not len(rows):
        return []
    keyed = list(rows.groupby(list(by), sort=False, dropna=False))
    if list(by) == ["cell"]:
        keyed.sort(key=lambda kv: int(kv[1]["cell_order"].iloc[0]))
    else:
        keyed.sort(key=lambda kv: tuple(str(v) for v in (kv[0] if isinstance(kv[0], tuple) else (kv[0],))))
    return [((k if isinstance(k, tuple) else (k,)), g) for k, g in keyed]


def _label(key: Tuple) -> str:
    return ", ".join(short_value(v) for v in key)


def _not_counted(results: StudyResults, phase: str, by: Sequence[str], key: Tuple, statuses: Sequence[str]) -> str:
    frame = results.frame
    mask = (frame["phase"] == phase) & ~frame["status"].isin(list(statuses))
    for col, value in zip(by, key):
        mask &= frame[col].astype(str) == str(value)
    counts = frame[mask]["status"].value_counts()
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def iterations_text(g) -> str:
    """The iterations the trials of one configuration reached: one number, or min–max."""
    vals = stats.clean(g["iterations"]) if "iterations" in g else []
    if not len(vals):
        return "—"
    lo, hi = int(min(vals)), int(max(vals))
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _concerns(rows, by: Sequence[str]) -> List[str]:
    """The fairness warnings of ``rows`` grouped by ``by`` (one column names a configuration)."""
    return fairness.concerns(rows, by[0] if len(by) == 1 else "cell")


def permutation_floor(n: int, m: int) -> float:
    """The smallest two-sided p an exact permutation test of n vs m values can give."""
    return min(1.0, 2.0 / math.comb(n + m, n)) if n and m else float("nan")


def _best_bold(values: List[float], direction: str) -> Optional[int]:
    finite = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    return (min(finite) if direction == "min" else max(finite))[1]


# ------------------------------------------------------------------ comparison table
def comparison_table(results: StudyResults, by: Optional[Sequence[str]] = None,
                     metrics: Optional[Sequence[str]] = None, phase: Optional[str] = None,
                     statuses: Sequence[str] = FINISHED, level: float = 0.95, ci: str = "t") -> Table:
    """Per configuration, over seeds: mean ± std and a confidence interval of each metric,
    iterations / wall seconds to reach the best, train seconds, peak memory."""
    import pandas as pd

    phase = phase or results.default_phase()
    rows = results.rows(phase, statuses)
    by = [resolve_column(results.frame, b) for b in (by or ["cell"])]
    mcols = metric_columns(results, metrics)
    for m in dict.fromkeys(metric_of(c) for c in mcols):
        check_protocol(rows, m)
    primary = metric_of(mcols[0]) if mcols else None
    groups = _groups(results, rows, by)
    records = []
    for key, g in groups:
        rec: Dict[str, Any] = {b: v for b, v in zip(by, key)}
        rec["n"] = len(g)
        rec["diverged"] = int((g["status"] == "diverged").sum())
        rec["not_counted"] = _not_counted(results, phase, by, key, statuses)
        for col in mcols:
            s = stats.summarize(g[col] if col in g else [], level=level, method=ci)
            rec.update({f"{col}.n": s.n, f"{col}.mean": s.mean, f"{col}.std": s.std,
                        f"{col}.ci_low": s.ci_low, f"{col}.ci_high": s.ci_high})
        rec["iterations"] = iterations_text(g)
        for col in ([f"best_iter.{primary}", f"best_wall_s.{primary}"] if primary else []) + [
                "train_s", "wall_s", "compute_s", "samples_seen", "iterations"]:
            rec[f"{col}.mean"] = stats.summarize(g[col] if col in g else [], level=level, method=ci).mean
        for col in ("peak_rss_mb", "peak_cuda_mb"):
            vals = stats.clean(g[col]) if col in g else []
            rec[f"{col}.max"] = float(max(vals)) if len(vals) else float("nan")
        records.append(rec)
    data = pd.DataFrame(records)
    pct = f"{level * 100:g}%"
    columns = ["configuration", "n", "iterations"]
    for col in mcols:
        columns += [f"{col} (mean ± std)", f"{col} {pct} CI"]
    if primary:
        columns += [f"iters to best {primary}", f"wall s to best {primary}"]
    columns += ["compute s", "train s", "peak RSS MB"]
    cuda = bool(len(data)) and data["peak_cuda_mb.max"].notna().any()
    if cuda:
        columns.append("peak CUDA MB")
    bold = {col: _best_bold([r[f"{col}.mean"] for r in records], results.direction(metric_of(col))) for col in mcols}
    table_rows = []
    for i, rec in enumerate(records):
        n_text = str(rec["n"]) + (f" ({rec['diverged']} diverged)" if rec["diverged"] else "")
        row = [Cell(_label(tuple(rec[b] for b in by))), Cell(n_text), Cell(rec["iterations"])]
        for col in mcols:
            row += [Cell(mean_std(rec[f"{col}.mean"], rec[f"{col}.std"]), bold=bold[col] == i),
                    Cell(interval(rec[f"{col}.ci_low"], rec[f"{col}.ci_high"]))]
        if primary:
            row += [Cell(fmt_count(rec[f"best_iter.{primary}.mean"])), Cell(fmt(rec[f"best_wall_s.{primary}.mean"]))]
        row += [Cell(fmt(rec["compute_s.mean"])), Cell(fmt(rec["train_s.mean"])), Cell(fmt(rec["peak_rss_mb.max"]))]
        if cuda:
            row.append(Cell(fmt(rec["peak_cuda_mb.max"])))
        table_rows.append(row)
    floors = {col: results.floor(metric_of(col), rows) for col in mcols}
    if any(floors.values()):  # the real-vs-real floor beside every value
        splits = next(f for f in floors.values() if f)["splits"]
        row = [Cell("real vs real (floor)"), Cell(f"{splits} splits"), Cell("")]
        for col in mcols:
            f = floors[col]
            row += [Cell(mean_std(f["mean"], f["std"]) if f else "—"), Cell("")]
        table_rows.append(row + [Cell("")] * (len(columns) - len(row)))
    notes = [f"{results.name}, {phase} trials; mean ± sample std over seeds; {pct} CI: "
             + ("Student t" if ci == "t" else "percentile bootstrap of the mean") + "; bold = best mean per column; "
             "iterations: the range over seeds; time columns are means over seeds (compute s: the compute clock, "
             "train s: wall seconds of training; evaluation excluded from both)."]
    if by != ["cell"]:
        notes.append("configuration = " + " / ".join(c.replace("config.", "") for c in by) + ".")
    floor_note = _floor_note(next((f for f in floors.values() if f), None))
    if floor_note:
        notes.append(floor_note)
    if not records:
        notes.append(f"No finished {phase} trials yet.")
    skipped = [f"{_label(tuple(r[b] for b in by))}: {r['not_counted']}" for r in records if r["not_counted"]]
    if skipped:
        notes.append("Not counted (unfinished or failed): " + "; ".join(skipped) + ".")
    return Table(f"{results.name}: comparison over seeds", columns, table_rows, data, notes, name="comparison",
                 warnings=_concerns(rows, by))


# -------------------------------------------------------------------- pairwise table
def pairwise_table(results: StudyResults, metric: Optional[str] = None, baseline: Optional[str] = None,
                   by: Optional[Sequence[str]] = None, phase: Optional[str] = None,
                   statuses: Sequence[str] = FINISHED, test: str = "welch", alpha: float = 0.05) -> Table:
    """Each configuration against a baseline on one metric column (default: best value of
    the study's primary metric): difference of means, Welch t-test and exact/Monte Carlo
    permutation test p-values; ``*`` marks p < alpha under ``test``."""
    import pandas as pd

    if test not in stats.TESTS:
        raise ConfigError("--test", test, "one of " + ", ".join(stats.TESTS))
    phase = phase or results.default_phase()
    rows = results.rows(phase, statuses)
    by = [resolve_column(results.frame, b) for b in (by or ["cell"])]
    col = metric_columns(results, [metric or results.default_metric()])[0]
    check_protocol(rows, metric_of(col))
    direction = results.direction(metric_of(col))
    groups = _groups(results, rows, by)
    labels = [_label(k) for k, _ in groups]
    if not groups:
        raise ConfigError("DIR", str(results.root), f"finished {phase} trials to compare (none yet)")
    if baseline is None:
        base_i = 0
    elif baseline in labels:
        base_i = labels.index(baseline)
    else:
        raise ConfigError("--baseline", baseline, "one of the configurations: " + "; ".join(labels))
    base_vals = groups[base_i][1][col]
    base = stats.summarize(base_vals)
    floor = results.floor(metric_of(col), rows)
    records, table_rows = [], []
    for i, (key, g) in enumerate(groups):
        s = stats.summarize(g[col])
        rec = {"configuration": labels[i], "baseline": i == base_i, "n": s.n, "iterations": iterations_text(g),
               "mean": s.mean, "std": s.std}
        if i == base_i:
            rec.update(diff=0.0, rel=0.0, p_welch=float("nan"), p_permutation=float("nan"), better=None,
                       significant=None)
        else:
            w, perm = stats.welch(g[col], base_vals), stats.permutation_test(g[col], base_vals)
            diff = s.mean - base.mean
            p = w.p_value if test == "welch" else perm.p_value
            rec.update(diff=diff, rel=diff / abs(base.mean) if base.mean else float("nan"), p_welch=w.p_value,
                       p_permutation=perm.p_value, better=(diff < 0) if direction == "min" else (diff > 0),
                       significant=bool(math.isfinite(p) and p < alpha))
        rec["gap_closed"] = gap_closed(base.mean, s.mean, floor["mean"]) if floor and i != base_i else float("nan")
        records.append(rec)
        gap = [Cell(f"{fmt(100 * rec['gap_closed'])}%" if math.isfinite(rec["gap_closed"]) else "—")] if floor else []
        if i == base_i:
            cells = [Cell(labels[i] + " (baseline)"), Cell(str(s.n)), Cell(rec["iterations"]),
                     Cell(mean_std(s.mean, s.std)), Cell("—"), Cell("—")] + gap + [Cell("—"), Cell("—")]
        else:
            sign = "+" if rec["diff"] > 0 else ""
            mark = " *" if rec["significant"] else ""
            cells = [Cell(labels[i]), Cell(str(s.n)), Cell(rec["iterations"]), Cell(mean_std(s.mean, s.std)),
                     Cell(f"{sign}{fmt(rec['diff'])}" + (" (better)" if rec["better"] else " (worse)" if rec["diff"] else "")),
                     Cell(f"{sign}{fmt(100 * rec['rel'])}%" if math.isfinite(rec["rel"]) else "—")] + gap + [
                     Cell(fmt(rec["p_welch"]) + (mark if test == "welch" else "")),
                     Cell(fmt(rec["p_permutation"]) + (mark if test == "permutation" else ""))]
        table_rows.append(cells)
    columns = ["configuration", "n", "iterations", f"{col} (mean ± std)", "Δ vs baseline", "Δ %"] + (
        ["gap to floor closed"] if floor else []) + ["p (Welch)", "p (permutation)"]
    if floor:
        table_rows.append([Cell("real vs real (floor)"), Cell(f"{floor['splits']} splits"), Cell(""),
                           Cell(mean_std(floor["mean"], floor["std"]))] + [Cell("")] * (len(columns) - 4))
    better = "lower" if direction == "min" else "higher"
    notes = [f"{results.name}, {phase} trials; {better} {metric_of(col)} is better; two-sided tests of equal means, "
             f"not corrected for multiple comparisons; * = p < {alpha:g} ({test}).",
             "Exact permutation tests have a floor, 2/C(n+m, n): " + _floors(records, base.n, alpha) + "."]
    if floor:
        notes.append(_floor_note(floor) + " Gap to floor closed = (baseline − configuration) / (baseline − floor): "
                     "0 % = no better than the baseline, 100 % = as close as real data gets; above 100 %: below the floor, "
                     "which is measured at a smaller n (half the reference set) and so carries more small-n bias "
                     "than the trials' evaluations.")
    return Table(f"{results.name}: {col} against {labels[base_i]}", columns, table_rows, pd.DataFrame(records),
                 notes, align=["l"] + ["r"] * (len(columns) - 1), name="pairwise", warnings=_concerns(rows, by))


def gap_closed(baseline: float, value: float, floor: float) -> float:
    """The share of the distance from the baseline's mean to the real-vs-real floor that
    ``value`` covers (either direction of better: the signs cancel); nan without a gap."""
    gap = baseline - floor
    if not all(map(math.isfinite, (baseline, value, floor))) or gap == 0:
        return float("nan")
    return (baseline - value) / gap


def _floor_note(floor: Optional[Dict[str, Any]]) -> str:
    if not floor:
        return ""
    return (f"Floor: the metric between two random halves of the reference set {floor.get('dataset')} "
            f"(n = {floor.get('n')} images of one half against the other, mean ± std over "
            f"{floor.get('splits')} splits; "
            "ganbench metric --split): what real data itself scores at this n.")


def _floors(records: List[Dict[str, Any]], n_base: int, alpha: float) -> str:
    """The permutation floor of each n vs baseline m actually compared, and what it allows."""
    pairs = sorted({(r["n"], n_base) for r in records if not r["baseline"] and r["n"]})
    parts = []
    for n, m in pairs:
        floor = permutation_floor(n, m)
        reach = "can" if floor < alpha else "cannot"
        parts.append(f"{fmt(floor)} for {n} vs {m} seeds (it {reach} go below {alpha:g})")
    return "; ".join(parts) or "no comparison yet"


# -------------------------------------------------------------------- ablation table
def _header_value(value: Any) -> str:
    """A ✓ column's header: a regularizer list by its names ("cr", "cr+r1"), else compact."""
    if isinstance(value, str) and value[:1] == "[":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return "+".join(str(v["name"]) for v in value)
    return short_value(value)


def _variant_factor_columns(variants: List[Dict[str, Any]], firsts: List[Dict[str, Any]]) -> List[Tuple[str, Any]]:
    """Factors of a named-variant study, read from the resolved configs of its rows: every
    config column under a path some variant sets that differs between configurations,
    unless its values follow from an earlier column of the same setting (a transfer
    method's kwargs and source follow from the method).
    The first configuration's value is the baseline; numeric columns show their values."""
    paths = []
    for v in variants:
        for path in (v.get("set") or {}):
            top = f"config.{path.split('[')[0]}"
            if top not in paths:
                paths.append(top)
    columns: List[Tuple[str, str]] = []
    for top in paths:
        setting = ".".join(top.split(".")[:2])  # config.transfer: its method, source, kwargs
        for c in (firsts[0] if firsts else {}):
            if (c == top or c.startswith(top + ".")) and c not in [col for _, col in columns]:
                columns.append((setting, c))
    kept: Dict[str, List[List[str]]] = {}
    out: List[Tuple[str, Any]] = []
    for top, c in columns:
        values = [json.dumps(f.get(c), sort_keys=True, default=str) for f in firsts]
        if len(set(values)) < 2 or _follows(kept.get(top, []), values):
            continue
        kept.setdefault(top, []).append(values)
        raw = [f.get(c) for f in firsts]
        if all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in raw if v is not None):
            out.append((c[len("config."):], lambda row, col=c: fmt(row.get(col))))
            continue
        for value in dict.fromkeys(values[1:]):
            if value == values[0]:
                continue
            shown = _header_value(json.loads(value))
            out.append((shown, lambda row, col=c, val=value: "✓" if json.dumps(row.get(col), sort_keys=True,
                                                                              default=str) == val else ""))
    headers = [h for h, _ in out]
    return [(h if headers.count(h) == 1 else f"{h} ({i})", fn) for i, (h, fn) in enumerate(out)]


def _follows(kept: List[List[str]], values: List[str]) -> bool:
    """Whether ``values`` is a function of one already kept column (same key, same value)."""
    for prev in kept:
        mapping: Dict[str, str] = {}
        if all(mapping.setdefault(k, v) == v for k, v in zip(prev, values)):
            return True
    return False


def _factor_columns(results: StudyResults, groups) -> List[Tuple[str, Any]]:
    """(header, function(first_row) -> cell text) for the ✓ / value columns of an ablation."""
    study = results.study
    cols: List[Tuple[str, Any]] = []

    def labels_of(row) -> Dict[str, Any]:
        try:
            return json.loads(row["labels"])
        except (TypeError, json.JSONDecodeError):
            return {}

    variants = study.get("variants") or []
    if variants:
        cols += _variant_factor_columns(variants, [g.iloc[0].to_dict() for _, g in groups])
    for path, values in (study.get("grid") or {}).items():
        values = list(values)
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            cols.append((path, lambda row, p=path: fmt(labels_of(row).get(p))))
            continue
        shorts = [short_value(v) for v in values[1:]]
        for short in shorts:
            header = short if shorts.count(short) == 1 and not any(short == h for h, _ in cols) else f"{path}={short}"
            cols.append((header, lambda row, p=path, s=short: "✓" if short_value(labels_of(row).get(p)) == s else ""))
    return cols


def ablation_table(results: StudyResults, metric: Optional[str] = None, phase: Optional[str] = None,
                   statuses: Sequence[str] = FINISHED, level: float = 0.95) -> Table:
    """One row per cell, a ✓ column per non-baseline value of each grid axis (the first value
    listed is the baseline) or per setting a named variant changes (against the first
    variant), numeric settings as value columns; then the metric as mean ± std with its CI."""
    import pandas as pd

    phase = phase or results.default_phase()
    rows = results.rows(phase, statuses)
    col = metric_columns(results, [metric or results.default_metric()])[0]
    check_protocol(rows, metric_of(col))
    groups = _groups(results, rows, ["cell"])
    factors = _factor_columns(results, groups)
    direction = results.direction(metric_of(col))
    summaries = [stats.summarize(g[col], level=level) for _, g in groups]
    best = _best_bold([s.mean for s in summaries], direction)
    pct = f"{level * 100:g}%"
    table_rows, records = [], []
    for i, ((key, g), s) in enumerate(zip(groups, summaries)):
        first = g.iloc[0].to_dict()
        marks = [fn(first) for _, fn in factors]
        table_rows.append([Cell(_label(key))] + [Cell(m) for m in marks] + [
            Cell(str(s.n)), Cell(mean_std(s.mean, s.std), bold=best == i), Cell(interval(s.ci_low, s.ci_high))])
        records.append({"configuration": _label(key), **{h: m for (h, _), m in zip(factors, marks)}, "n": s.n,
                        "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high})
    columns = ["configuration"] + [h for h, _ in factors] + ["n", f"{col}", f"{pct} CI"]
    align = ["l"] + ["c"] * len(factors) + ["r", "r", "r"]
    better = "lower" if direction == "min" else "higher"
    notes = [f"{results.name}, {phase} trials; ✓ = setting on (the first grid value / first variant is the "
             f"baseline); {col}: mean ± std over seeds, {better} is better, best in bold."]
    return Table(f"{results.name}: ablation ({col})", columns, table_rows, pd.DataFrame(records), notes, align=align,
                 name="ablation", warnings=fairness.concerns(rows))


# ------------------------------------------------------------------ registered kinds
@table_kind("comparison", "each configuration over seeds: mean ± std and CI of every metric", order=10)
def _comparison(results: StudyResults, o: AnalysisOptions) -> Table:
    return comparison_table(results, by=o.by, metrics=[o.metric] if o.metric else None, phase=o.phase, ci=o.ci,
                            level=o.level)


@table_kind("ablation", "one row per grid cell, a ✓ column per setting, the metric with its CI", order=20,
            in_report=lambda results, phase: phase == "grid" and bool(results.study.get("grid")
                                                                        or results.study.get("variants")))
def _ablation(results: StudyResults, o: AnalysisOptions) -> Table:
    return ablation_table(results, metric=o.metric, phase=o.phase, level=o.level)


@table_kind("pairwise", "each configuration against a baseline: difference of means and p-values", order=30)
def _pairwise(results: StudyResults, o: AnalysisOptions) -> Table:
    return pairwise_table(results, metric=o.metric, baseline=o.baseline, by=o.by, phase=o.phase, test=o.test)
