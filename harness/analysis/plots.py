"""plotly figures of study results, and their PNG export.

Every figure colours a configuration (cell) the same way, so a reader can follow one
method from plot to plot:

- :func:`metric_figure` — one line per trial: a metric against wall-clock seconds since
  the trial started (evaluation included: what a user waits for) or against iterations;
- :func:`band_figure` — per configuration, the mean over seeds at each evaluation with a
  confidence band (Student t); against wall seconds the x of a point is the mean wall
  time of the seeds at that iteration;
- :func:`loss_figure` — D and G losses per trial (non-convergence and collapse show here);
- :func:`augment_figure` — ADA's augmentation probability p over iterations;
- :func:`optuna_figures` — Optuna's own optimisation history and parameter importances
  of a search (read from the study's optuna.db).

:class:`PngExporter` writes static PNGs through kaleido, starting ONE Chromium export
server for all of a report's figures (~0.2 s a figure instead of ~3 s each). Without a
Chrome/Chromium it reports one line and writes nothing — never an exception.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from harness.analysis import stats

X_AXES = {"wall_s": "wall-clock seconds since trial start", "train_s": "training seconds (evaluation excluded)",
          "iteration": "iterations (G steps)"}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def _go():
    import plotly.graph_objects as go

    return go


def colours(cells: Sequence[str]) -> Dict[str, str]:
    return {cell: PALETTE[i % len(PALETTE)] for i, cell in enumerate(dict.fromkeys(cells))}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def _layout(fig, title: str, x: str, y: str, log_y: bool = False):
    fig.update_layout(title=title, template="plotly_white", xaxis_title=x, yaxis_title=y,
                      legend_title_text="configuration", margin=dict(l=60, r=20, t=50, b=50), height=460,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _check_x(x: str) -> None:
    if x not in X_AXES:
        raise ValueError(f"x {x!r}: expected one of {', '.join(X_AXES)}")


def _trial_lines(fig, data, x: str, y: str, colour: Dict[str, str], label: str, shown: set, mode: str = "lines",
                 width: float = 1.5, **where) -> None:
    """One line per trial of ``data`` (``y`` against ``x``), coloured by its cell; the
    legend shows each cell once (``shown`` carries that across panels)."""
    go = _go()
    for trial_id, g in data[data[y].notna()].groupby("trial_id", sort=True):
        cell = g["cell"].iloc[0]
        fig.add_trace(go.Scatter(
            x=g[x], y=g[y], mode=mode, name=cell, legendgroup=cell, showlegend=cell not in shown,
            line=dict(color=colour.get(cell), width=width), marker=dict(size=5),
            hovertemplate=f"{trial_id} (seed {g['seed'].iloc[0]})<br>{x}=%{{x:.4g}}<br>{label}=%{{y:.4g}}"
                          "<extra>%{fullData.name}</extra>"), **where)
        shown.add(cell)


def metric_figure(curves, metric: str, x: str = "wall_s", colour: Optional[Dict[str, str]] = None):
    """``metric`` (a key such as 'fid' or 'swd') against ``x``, one line per trial."""
    _check_x(x)
    col = f"metric.{metric}"
    fig = _go().Figure()
    if col in curves.columns:
        _trial_lines(fig, curves, x, col, colour or colours(list(curves["cell"])), metric, set(), "lines+markers")
    return _layout(fig, f"{metric} per trial vs {X_AXES[x]}", X_AXES[x], metric)


def band_figure(curves, metric: str, x: str = "wall_s", level: float = 0.95,
                colour: Optional[Dict[str, str]] = None):
    """Mean of ``metric`` over seeds per configuration, with a ``level`` t-interval band."""
    go = _go()
    _check_x(x)
    col = f"metric.{metric}"
    fig = go.Figure()
    if col in curves.columns:
        evals = curves[curves[col].notna()]
        colour = colour or colours(list(evals["cell"]))
        lines = []
        for cell, g in evals.groupby("cell", sort=False):
            xs, means, lows, highs, ns = [], [], [], [], []
            for iteration, at in g.groupby("iteration", sort=True):
                s = stats.summarize(at[col], level=level)
                xs.append(float(at[x].mean()))
                means.append(s.mean)
                lows.append(s.ci_low)
                highs.append(s.ci_high)
                ns.append(s.n)
            c = colour.get(cell, PALETTE[0])
            band = [i for i, lo in enumerate(lows) if math.isfinite(lo)]
            if band:
                bx = [xs[i] for i in band]
                fig.add_trace(go.Scatter(x=bx + bx[::-1], y=[highs[i] for i in band] + [lows[i] for i in band][::-1],
                                         mode="lines", fill="toself", fillcolor=_rgba(c, 0.18),
                                         line=dict(width=0),
                                         hoverinfo="skip", showlegend=False, legendgroup=cell, name=f"{cell} CI"))
            lines.append(go.Scatter(x=xs, y=means, mode="lines+markers", name=cell, legendgroup=cell,
                                    line=dict(color=c, width=2), customdata=ns,
                                    hovertemplate=f"{x}=%{{x:.4g}}<br>mean {metric}=%{{y:.4g}} over %{{customdata}} "
                                                  "seeds<extra>%{fullData.name}</extra>"))
        for line in lines:  # means on top of every band
            fig.add_trace(line)
    pct = f"{level * 100:g}%"
    return _layout(fig, f"{metric}: mean over seeds with {pct} CI vs {X_AXES[x]}", X_AXES[x], metric)


def loss_figure(curves, names: Sequence[str] = ("d_loss", "g_loss"), colour: Optional[Dict[str, str]] = None):
    """The named losses per trial against iterations, one panel each."""
    from plotly.subplots import make_subplots

    present = [n for n in names if f"loss.{n}" in curves.columns]
    fig = make_subplots(rows=max(1, len(present)), cols=1, shared_xaxes=True, subplot_titles=present or ["no losses"],
                        vertical_spacing=0.08)
    colour = colour or colours(list(curves["cell"])) if len(curves) else {}
    shown: set = set()
    for r, name in enumerate(present, start=1):
        _trial_lines(fig, curves, "iteration", f"loss.{name}", colour, name, shown, width=1, row=r, col=1)
    fig.update_layout(title="losses per trial", template="plotly_white", legend_title_text="configuration",
                      legend=dict(orientation="h", yanchor="top", y=-0.08, xanchor="left", x=0),
                      height=260 * max(1, len(present)) + 60, margin=dict(l=60, r=20, t=60, b=40))
    fig.update_xaxes(title_text=X_AXES["iteration"], row=max(1, len(present)), col=1)
    return fig


def augment_figure(curves, key: str = "ada_p", colour: Optional[Dict[str, str]] = None):
    """ADA's augmentation probability per trial (None when no trial reports ``augment.<key>``)."""
    go = _go()
    col = f"augment.{key}"
    if col not in curves.columns or not curves[col].notna().any():
        return None
    fig = go.Figure()
    _trial_lines(fig, curves, "iteration", col, colour or colours(list(curves["cell"])), "p", set())
    return _layout(fig, "ADA augmentation probability p per trial", X_AXES["iteration"], "p")


def optuna_figures(root: Path, study_name: str, notice: Callable[[str], None] = lambda s: None) -> Dict[str, object]:
    """Optuna's optimisation history and parameter importances of a search study, read from
    the study folder's Optuna database (empty when there is none)."""
    from harness.store import StudyRecord

    record = StudyRecord(root)
    db = record.optuna_path
    if not db.exists():
        return {}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=record.optuna_url)
    except Exception as err:  # a db from another study name, or a corrupt file
        notice(f"Optuna plots skipped: cannot read {db}: {err}")
        return {}
    figs: Dict[str, object] = {}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        notice("Optuna plots skipped: no completed search trial yet")
        return figs
    figs["optuna_history"] = optuna.visualization.plot_optimization_history(study)
    import warnings

    try:
        with warnings.catch_warnings():  # "some regimes have < 2 trials": small searches always do
            warnings.simplefilter("ignore")
            figs["optuna_importance"] = optuna.visualization.plot_param_importances(study)
    except Exception as err:  # too few trials, or a parameter that never varied
        notice(f"parameter importances skipped: {type(err).__name__}: {err}")
    for fig in figs.values():
        fig.update_layout(template="plotly_white", height=420)
    return figs


def find_browser() -> Optional[str]:
    """The Chrome/Chromium kaleido would use (BROWSER_PATH, then PATH and the usual
    install locations), or None."""
    import os
    import shutil

    explicit = os.environ.get("BROWSER_PATH")
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    try:
        from choreographer.browsers.chromium import Chromium

        return Chromium.find_browser(skip_local=False)
    except Exception:  # another choreographer version: look on PATH ourselves
        for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
            if shutil.which(name):
                return shutil.which(name)
    return None


class PngExporter:
    """Static PNG export of many figures through ONE kaleido/Chromium server.

    ``with PngExporter(notice=print) as png: png.write(fig, path)``. When no Chrome or
    Chromium can be started, :attr:`available` is False, one notice line says why, and
    :meth:`write` returns None."""

    def __init__(self, notice: Callable[[str], None] = print, scale: float = 2.0):
        self.notice = notice
        self.scale = scale
        self.available = False
        self.reason = ""
        self._server = False

    def __enter__(self) -> "PngExporter":
        try:
            import kaleido
        except ImportError:
            self._skip("the kaleido package is not installed (pip install kaleido)")
            return self
        browser = find_browser()
        if browser is None:
            self._skip("none found on PATH or at BROWSER_PATH")
            return self
        try:
            kaleido.start_sync_server(silence_warnings=True)
            self._server = True
        except Exception as err:
            self._skip(f"{type(err).__name__}: {err}")
            return self
        # A browser that cannot start kills kaleido's server thread and leaves a write
        # waiting for ever: probe with one tiny figure under a time limit first.
        self.available = True
        if not self._probe():
            self._skip(f"{browser} did not render a probe figure within {self.probe_timeout_s:g} s")
        return self

    probe_timeout_s = 60.0

    def _probe(self) -> bool:
        import tempfile
        import threading

        go = _go()
        done: List[bool] = []

        def run() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                if self.write(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), Path(tmp) / "probe.png") is not None:
                    done.append(True)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(self.probe_timeout_s)
        return bool(done)

    def _skip(self, why: str) -> None:
        self.available = False
        self.reason = why
        self.notice(f"PNG export skipped: no usable Chrome/Chromium for kaleido ({why}); install one "
                    "(Debian: apt-get install chromium) or pass --no-png")

    def write(self, fig, path: Path) -> Optional[Path]:
        if not self.available:
            return None
        import warnings

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig.write_image(str(path), format="png", scale=self.scale)
        except Exception as err:  # the browser is missing or dies: say so once, write no more
            self._skip(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            return None
        return path

    def __exit__(self, *exc) -> None:
        if self._server:
            import kaleido

            try:
                kaleido.stop_sync_server(silence_warnings=True)
            except Exception:
                pass
            self._server = False
