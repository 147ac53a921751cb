"""One self-contained HTML page per study: what was run, the tables, the plots, the latest
samples of each configuration, the protocol of every metric and what failed.

``write_report(results_dir)`` reads the study's results (completed rows only count in
tables; running / pending rows are listed, so a report of a running study is honest) and
writes ``report.html`` atomically. plotly.js is inlined once (``plotlyjs="inline"``, the
page works offline and can be mailed) or loaded from the plotly CDN (``"cdn"``, ~5 MB
smaller). With ``png=True`` every figure is also written as a PNG beside the report
(``<report>_files/``) through one kaleido export server.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from harness.analysis import fairness, plots
from harness.analysis.glossary import glossary, value_scale
from harness.analysis.kinds import table_kinds
from harness.analysis.options import PLOTLYJS, ReportOptions
from harness.analysis.render import Cell, Table, fmt
from harness.analysis.results import FINISHED, StudyResults, curves, load_study, pair_grids, sample_grids
from harness.analysis.tables import comparison_table, metric_columns, protocols
from harness.errors import ConfigError
from harness.files import atomic_write_text

__all__ = ["PLOTLYJS", "ReportOptions", "render_report", "write_report"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1280px;padding:16px 28px;
color:#1d2733;line-height:1.45}
h1{margin-bottom:0}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:36px}
.gb-meta{color:#57606a}.gb-table{border-collapse:collapse;margin:12px 0;font-size:13px}
.gb-table caption{text-align:left;font-weight:600;padding:4px 0}
.gb-table th,.gb-table td{border:1px solid #d0d7de;padding:4px 8px;white-space:nowrap}
.gb-table thead th{background:#f6f8fa}.gb-table tbody tr:nth-child(even){background:#fbfcfd}
.gb-notes{font-size:12px;color:#57606a;max-width:1100px}.gb-warn{background:#fff8c5;border:1px solid #d4a72c;
padding:8px 12px;border-radius:6px}.gb-samples{display:flex;flex-wrap:wrap;gap:18px}
.gb-samples figure{margin:0;max-width:300px}.gb-pairs figure{max-width:420px}.gb-samples img{width:100%;image-rendering:pixelated;
border:1px solid #d0d7de}.gb-samples figcaption{font-size:12px;color:#57606a}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px}.gb-scroll{overflow-x:auto}
.gb-wrap td{white-space:normal!important;overflow-wrap:anywhere;max-width:760px}
.gb-banner{background:#ffebe9;border:2px solid #cf222e;padding:10px 14px;border-radius:6px}
"""


def _section(title: str, anchor: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def _warn(text: str) -> str:
    return f'<p class="gb-warn">{html.escape(text)}</p>'


def _table_html(build: Callable[[], Any]) -> str:
    try:
        table = build()
        table.warnings = []  # the report says them once, in the banner at the top
        return '<div class="gb-scroll">' + table.to_html() + "</div>"
    except ConfigError as err:
        return _warn(f"Table not shown: {err}")


def _plain_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], name: str, wrap: bool = False) -> str:
    """A listing (statuses, protocols, failures) through the one Table renderer; ``wrap``:
    long cells (protocols, descriptions) wrap instead of widening the page."""
    cells = [[Cell(v if isinstance(v, str) else fmt(v)) for v in row] for row in rows]
    table = Table("", list(columns), cells, data=None, align=["l"] * len(columns), name=name)
    return f'<div class="gb-scroll{" gb-wrap" if wrap else ""}">' + table.to_html() + "</div>"


def _banner(res: StudyResults, phase: str) -> str:
    """The fairness warnings of the finished trials the tables pool, loudly, at the top."""
    found = fairness.concerns(res.rows(phase, FINISHED))
    if not found:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in found)
    return (f'<div class="gb-banner"><strong>This comparison may be unfair.</strong><ul>{items}</ul>'
            "Read the tables with these in mind (docs/concepts.md: fair comparisons).</div>")


def _better_words(direction: str) -> str:
    """'min' -> 'lower'; 'a: min, b: max' (a metric whose keys differ) -> 'a: lower, b: higher'."""
    words = {"min": "lower", "max": "higher"}
    if direction in words:
        return words[direction]
    return ", ".join(f"{key}: {words.get(d, d)}" for key, _, d in
                     (part.rpartition(": ") for part in direction.split(", ")))


def _glossary_section(res: StudyResults) -> str:
    entries = glossary(res)
    if not entries:
        return "<p>No metric has been evaluated yet (or the records predate metric descriptions).</p>"
    rows = [[e.metric, ", ".join(e.values), e.description, e.scale or "—",
             _better_words(e.direction),
             "; ".join(f"{k}={v}" for k, v in sorted(e.protocol.items()))] for e in entries]
    return _plain_table(["metric", "values", "what it measures", "unit / scale", "better", "protocol"], rows,
                        "glossary", wrap=True)


def _status_section(res: StudyResults) -> str:
    frame = res.frame
    counts = frame.groupby(["phase", "status"]).size() if len(frame) else {}
    rows = [[phase, status, int(n)] for (phase, status), n in (counts.items() if len(frame) else [])]
    body = _plain_table(["phase", "status", "trials"], rows, "status-counts")
    bad = frame[frame["status"].isin(["failed", "diverged", "stopped"])] if len(frame) else frame
    if len(bad):
        body += "<h3>Failed, diverged and stopped trials</h3>" + _plain_table(
            ["trial", "phase", "configuration", "seed", "status", "iteration", "attempts", "error"],
            [[r["trial_id"], r["phase"], r["cell"], r.get("seed"), r["status"], r.get("iterations"), r.get("attempts"),
              (r.get("error") or ("stopped early by the scheduler" if r["status"] == "stopped" else ""))]
             for _, r in bad.iterrows()], "failures")
    else:
        body += "<p>No trial failed, diverged or was stopped.</p>"
    running = frame[frame["status"].isin(["running", "pending"])] if len(frame) else frame
    if len(running):
        body += _warn(f"{len(running)} trial(s) still running or pending: tables count finished trials only.")
    return body


def _protocol_section(res: StudyResults) -> str:
    rows = []
    for col in [c for c in res.frame.columns if c.startswith("protocol.")]:
        metric = col[len("protocol."):]
        for key, trials in protocols(res.frame, metric).items():
            proto = json.loads(key)
            rows.append([metric, len(trials), "; ".join(f"{k}={v}" for k, v in sorted(proto.items()))])
    if not rows:
        return "<p>No metric has been evaluated yet.</p>"
    note = ("<p class=\"gb-notes\">One row per distinct protocol of a metric (the evaluation's sampling seed "
            "varies with the trial seed by design and is left out). A metric with two rows was measured under two "
            "protocols: tables refuse to pool it.</p>")
    return _plain_table(["metric", "trials", "protocol"], rows, "protocols", wrap=True) + note


def _first_trials_with_grids(res: StudyResults, phase: str, least: int, grids: Optional[Callable] = None):
    """(cell, trial row, its PNGs) for each cell's first trial (lowest seed) that wrote at
    least ``least`` of them (``grids(trial_id)``; default: its sample grids)."""
    grids = grids or (lambda trial_id: sample_grids(res, trial_id))
    rows = res.frame[res.frame["phase"] == phase]
    for cell in res.cells:
        trials = rows[rows["cell"] == cell].sort_values(["seed", "trial_id"], na_position="last")
        for _, trial in trials.iterrows():
            pngs = grids(trial["trial_id"])
            if len(pngs) >= least:
                yield cell, trial, pngs
                break


def _grid_figure(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _grid_iteration(png: Path) -> str:
    return png.stem.split("-")[-1].lstrip("0") or "0"


def _trial_words(trial) -> str:
    return f"{html.escape(trial['trial_id'])}, seed {html.escape(str(trial.get('seed')))}"


def _samples_section(res: StudyResults, phase: str) -> str:
    figures = [_grid_figure(pngs[-1], f"{html.escape(cell)}<br>{_trial_words(trial)}, iteration "
                                      f"{_grid_iteration(pngs[-1])} (fixed noise, EMA G where enabled)")
               for cell, trial, pngs in _first_trials_with_grids(res, phase, 1)]
    if not figures:
        return "<p>No sample grids written yet (sample_every: 0, or no trial reached its first grid).</p>"
    return '<div class="gb-samples">' + "".join(figures) + "</div>"


MEMORIZATION_SPACES = ("effnet", "inception")


def _pairs_section(res: StudyResults, phase: str) -> str:
    """Per cell, its first trial's latest closest generated/training pairs of each
    memorisation check (generated images on top, each one's nearest training image below)."""
    figures = []
    for space in MEMORIZATION_SPACES:
        for cell, trial, pngs in _first_trials_with_grids(res, phase, 1, lambda t: pair_grids(res, t, space)):
            value = trial.get(f"final.memorization_{space}")
            share = f", near-copies {100 * float(value):.1f} %" if value is not None and value == value else ""
            figures.append(_grid_figure(pngs[-1], f"{html.escape(cell)}<br>{_trial_words(trial)}, iteration "
                                                  f"{_grid_iteration(pngs[-1])}, {space} features{share}"))
    if not figures:
        return "<p>No memorisation check (memorization_effnet / memorization_inception) was evaluated.</p>"
    return ("<p>The generated images closest to a training image (relative to that training image's own nearest "
            "training neighbour), top row, above their nearest training image. Near-identical pairs mean the "
            "generator reproduces its training set: its FD is then not evidence of quality.</p>"
            '<div class="gb-samples gb-pairs">' + "".join(figures) + "</div>")


def _timeline_section(res: StudyResults, phase: str, per_trial: int = 6) -> str:
    """Per cell, its first trial's fixed-noise grids at up to ``per_trial`` iterations
    spread evenly over training (seed B's "grids over time")."""
    strips = []
    for cell, trial, pngs in _first_trials_with_grids(res, phase, 2):
        picks = sorted({round(i * (len(pngs) - 1) / (per_trial - 1)) for i in range(per_trial)})
        figures = [_grid_figure(pngs[i], f"iteration {_grid_iteration(pngs[i])}") for i in picks]
        strips.append(f"<h3>{html.escape(cell)} — {_trial_words(trial)}</h3>"
                      f"<div class=\"gb-samples\">{''.join(figures)}</div>")
    if not strips:
        return "<p>Fewer than two sample grids per trial: nothing to show over time.</p>"
    return ("<p>The same fixed noise rendered at iterations spread over training (EMA G where enabled); "
            "every grid is under each trial's <code>samples/</code>.</p>" + "".join(strips))


def build_figures(res: StudyResults, metric: Optional[str], phase: str, level: float = 0.95,
                  notice: Callable[[str], None] = lambda s: None) -> Dict[str, Any]:
    """The report's figures by name, in display order."""
    rows = res.frame[res.frame["phase"] == phase]
    series = curves(res, list(rows["trial_id"]))
    figs: Dict[str, Any] = {}
    if not len(series):
        return figs
    shown = set(rows["cell"])
    colour = plots.colours([c for c in res.cells if c in shown])
    if metric:
        direction = res.direction(metric)
        y = plots.axis_title(metric, value_scale(res, metric), direction)
        # compute seconds where the trials recorded them (older records: wall training seconds)
        clock = "compute_s" if "compute_s" in series and series["compute_s"].notna().any() else "train_s"
        figs[f"{metric}_band_iteration"] = plots.band_figure(series, metric, "iteration", level, colour, y_title=y)
        figs[f"{metric}_band_{clock}"] = plots.band_figure(series, metric, clock, level, colour, y_title=y)
        figs[f"{metric}_best_{clock}"] = plots.band_figure(series, metric, clock, level, colour, best=True,
                                                           direction=direction, y_title=y)
        figs[f"{metric}_trials_{clock}"] = plots.metric_figure(series, metric, clock, colour, y_title=y)
        figs[f"{metric}_trials_wall"] = plots.metric_figure(series, metric, "wall_s", colour, y_title=y)
    figs["losses"] = plots.loss_figure(series, colour=colour)
    ada = plots.augment_figure(series, "ada_p", colour)
    if ada is not None:
        figs["ada_p"] = ada
    if res.kind == "search":
        figs.update(plots.optuna_figures(res.root, res.name, notice))
    return figs


def render_report(res: StudyResults, options: Optional[ReportOptions] = None,
                  notice: Callable[[str], None] = print) -> Tuple[str, Dict[str, Any]]:
    """The report's HTML and its figures."""
    import plotly
    import plotly.io as pio

    options = options or ReportOptions()
    metric, by, phase, ci, level = options.metric, options.by, options.phase, options.ci, options.level
    phase = phase or res.default_phase()
    try:
        metric = metric or res.default_metric()
        metric_columns(res, [metric])
    except ConfigError as err:
        if metric:  # a metric the user named that the study does not have
            raise
        notice(f"no tables of metrics yet: {err}")
        metric = None
    finished = res.rows(phase, FINISHED)
    parts: List[str] = []
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    description = res.study.get("description") or ""
    parts.append(f"<h1>{html.escape(res.name)}</h1>")
    parts.append(f'<p class="gb-meta">{res.kind} study · {len(res.frame)} trials planned or run · tables over the '
                 f"{len(finished)} finished {phase} trials · results <code>{html.escape(str(res.root))}</code> · "
                 f"report written {when}</p>")
    if description:
        parts.append(f"<p>{html.escape(description)}</p>")
    study_yaml = res.record.study_text()
    parts.append(f"<details><summary>study file as run</summary><pre>{html.escape(study_yaml)}</pre></details>")
    parts.append(_banner(res, phase))
    toc = ["tables", "plots", "glossary", "samples", "memorisation", "over-time", "protocols", "trials"]
    parts.append("<p>" + " · ".join(f'<a href="#{t}">{t}</a>' for t in toc) + "</p>")

    tables = []
    if metric:
        resolved = dataclasses.replace(options, metric=metric, phase=phase)
        for kind in table_kinds():  # every registered kind the report shows, in order
            if kind.in_report(res, phase):
                tables.append(_table_html(lambda: kind.build(res, resolved)))
        other = [m for m in res.metrics() if m != metric]
        if other:
            tables.append(_table_html(lambda: comparison_table(res, by=by, metrics=other, phase=phase, ci=ci,
                                                               level=level)))
    else:
        tables.append("<p>No finished trial has a metric value yet.</p>")
    if res.kind == "search":
        search = res.frame[res.frame["phase"] == "search"]
        tables.append("<h3>Search trials</h3>" + _plain_table(
            ["trial", "status", "iterations", "objective", "parameters"],
            [[r["trial_id"], r["status"], r.get("iterations"), r.get("objective"), r["cell"]]
             for _, r in search.iterrows()], "search-trials"))
    parts.append(_section("Tables", "tables", "\n".join(tables)))

    figs = build_figures(res, metric, phase, level, notice)
    blocks = []
    for name, fig in figs.items():
        blocks.append(pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                                  config={"responsive": True, "displaylogo": False}))
    parts.append(_section("Plots", "plots", "\n".join(blocks) or "<p>No reports written yet.</p>"))
    parts.append(_section("Metric glossary", "glossary", _glossary_section(res)))
    parts.append(_section("Latest samples", "samples", _samples_section(res, phase)))
    parts.append(_section("Closest to the training set", "memorisation", _pairs_section(res, phase)))
    parts.append(_section("Samples over time", "over-time", _timeline_section(res, phase)))
    parts.append(_section("Metric protocols", "protocols", _protocol_section(res)))
    parts.append(_section("Trials", "trials", _status_section(res)))

    if options.plotlyjs == "inline":
        script = f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>'
    else:
        script = f'<script src="https://cdn.plot.ly/plotly-{plotly_js_version()}.min.js" charset="utf-8"></script>'
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(res.name)} — "
            f"ganbench report</title><style>{_CSS}</style>{script}</head>\n<body>\n" + "\n".join(parts)
            + "\n</body></html>\n")
    return page, figs


def plotly_js_version() -> str:
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


def write_report(results_dir, out: Optional[Path] = None, options: Optional[ReportOptions] = None,
                 notice: Callable[[str], None] = print, **fields: Any) -> Path:
    """Write the study's report (default: the study folder's report.html); return its path.
    ``options`` (or its fields as keywords: ``png=False, metric="swd"``) say what it shows."""
    from harness.store import StudyRecord

    options = dataclasses.replace(options, **fields) if options is not None else ReportOptions(**fields)
    record = results_dir if isinstance(results_dir, StudyRecord) else StudyRecord(results_dir)
    res = load_study(record.root)
    # the study's own report.html is published with the study (object storage); --out is a local file
    publish = record.publish if not out else (lambda path: None)
    out = Path(out) if out else record.report_path
    page, figs = render_report(res, options, notice=notice)
    atomic_write_text(out, page)
    publish(out)
    if options.png and figs:
        folder = out.with_name(out.stem + "_files")
        written = 0
        with plots.PngExporter(notice=notice) as exporter:
            for name, fig in figs.items():
                if exporter.write(fig, folder / f"{name}.png") is None:
                    break
                publish(folder / f"{name}.png")
                written += 1
        if written:
            notice(f"{written} PNG figure(s) in {folder}")
    return out
