"""plotly figures of study results, and their PNG export.

Every figure colours a configuration (cell) the same way, so a reader can follow one
method from plot to plot:

- :func:`metric_figure` — one line per trial (a configuration's colour, a dash per seed):
  a metric against compute seconds, iterations, samples or wall-clock seconds;
- :func:`band_figure` — per configuration, the mean over seeds with a confidence band
  (Student t) on a common x grid: each seed's series interpolated inside its own range,
  the band drawn only where at least two seeds have data; optionally the best-so-far
  curve;
- :func:`loss_figure` — D and G losses per trial (non-convergence and collapse show here);
- :func:`augment_figure` — ADA's augmentation probability p over iterations;
- :func:`optuna_figures` — Optuna's own optimisation history and parameter importances
  of a search (read from the study's optuna.db).

:class:`PngExporter` writes static PNGs through kaleido, starting ONE Chromium export
server for all of a report's figures (~0.2 s a figure instead of ~3 s each). Without a
Chrome/Chromium it reports one line and writes nothing — never an exception.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from harness.analysis import stats

X_AXES = {"compute_s": "compute seconds of training (the trial's compute clock)",
          "iteration": "iterations (G steps)", "samples_seen": "real images shown to D",
          "train_s": "wall seconds of training (evaluation excluded)",
          "wall_s": "wall-clock seconds since trial start"}
# x axes a mean over seeds may be drawn against: ones that measure the trial's progress
BAND_AXES = ("iteration", "samples_seen", "compute_s", "train_s")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]


def _go():
    import plotly.graph_objects as go

    return go


def colours(cells: Sequence[str]) -> Dict[str, str]:
    return {cell: PALETTE[i % len(PALETTE)] for i, cell in enumerate(dict.fromkeys(cells))}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def axis_title(metric: str, scale: str = "", direction: str = "") -> str:
    """A metric axis title that carries its scale and direction: 'swd ×10³, lower is better'."""
    better = {"min": ", lower is better", "max": ", higher is better"}.get(direction, "")
    return f"{metric}{' ' + scale if scale.startswith('×') else ''}{better}"


def _layout(fig, title: str, x: str, y: str, log_y: bool = False):
    fig.update_layout(title=title, template="plotly_white", xaxis_title=x, yaxis_title=y,
                      legend_title_text="configuration", margin=dict(l=60, r=20, t=50, b=50), height=460,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _check_x(x: str, allowed: Sequence[str] = tuple(X_AXES)) -> None:
    if x not in allowed:
        raise ValueError(f"x {x!r}: expected one of {', '.join(allowed)}")


def _trial_lines(fig, data, x: str, y: str, colour: Dict[str, str], label: str, shown: set, mode: str = "lines",
                 width: float = 1.5, **where) -> None:
    """One line per trial of ``data`` (``y`` against ``x``): its configuration's colour,
    a dash per seed, the seed in the legend and the hover (``shown`` carries the legend
    entries across panels)."""
    go = _go()
    data = data[data[y].notna() & data[x].notna()]
    seeds: Dict[str, List[str]] = {}
    for trial_id, g in data.groupby("trial_id", sort=True):
        cell, seed = g["cell"].iloc[0], g["seed"].iloc[0]
        order = seeds.setdefault(cell, [])
        order.append(trial_id)
        name = f"{cell} · seed {seed}"
        fig.add_trace(go.Scatter(
            x=g[x], y=g[y], mode=mode, name=name, legendgroup=cell, showlegend=name not in shown,
            line=dict(color=colour.get(cell), width=width, dash=DASHES[(len(order) - 1) % len(DASHES)]),
            marker=dict(size=5),
            hovertemplate=f"{trial_id} (seed {seed})<br>{x}=%{{x:.4g}}<br>{label}=%{{y:.4g}}"
                          "<extra>%{fullData.name}</extra>"), **where)
        shown.add(name)


def metric_figure(curves, metric: str, x: str = "compute_s", colour: Optional[Dict[str, str]] = None,
                  y_title: Optional[str] = None):
    """``metric`` (a key such as 'fid' or 'swd') against ``x``, one line per trial."""
    _check_x(x)
    col = f"metric.{metric}"
    fig = _go().Figure()
    if col in curves.columns and x in curves.columns:
        _trial_lines(fig, curves, x, col, colour or colours(list(curves["cell"])), metric, set(), "lines+markers")
    return _layout(fig, f"{metric} per trial vs {X_AXES[x]}", X_AXES[x], y_title or metric)


def _segments(mask: Sequence[bool]) -> List[List[int]]:
    """Runs of consecutive True indices."""
    runs: List[List[int]] = []
    for i, on in enumerate(mask):
        if on:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
    return runs


def band_figure(curves, metric: str, x: str = "iteration", level: float = 0.95,
                colour: Optional[Dict[str, str]] = None, best: bool = False, direction: str = "min",
                y_title: Optional[str] = None):
    """Mean of ``metric`` over seeds per configuration with a ``level`` t-interval band, on
    a common x grid (:func:`harness.analysis.stats.band_on_grid`: each seed interpolated
    inside its own range; the band only where ≥ 2 seeds have data). ``best``: the
    best-so-far series of each seed instead of the raw one."""
    go = _go()
    _check_x(x, BAND_AXES)
    col = f"metric.{metric}"
    fig = go.Figure()
    if col in curves.columns and x in curves.columns:
        evals = curves[curves[col].notna() & curves[x].notna()]
        colour = colour or colours(list(evals["cell"]))
        lines = []
        for cell, g in evals.groupby("cell", sort=False):
            series = []
            for _, t in g.sort_values(x).groupby("trial_id", sort=True):
                ys = stats.best_so_far(t[col], direction == "max") if best else t[col].to_numpy()
                series.append((t[x].to_numpy(), ys))
            band = stats.band_on_grid(series, level=level, step=best)
            c = colour.get(cell, PALETTE[0])
            for run in _segments([k >= 2 for k in band.n]):
                bx = [float(band.x[i]) for i in run]
                fig.add_trace(go.Scatter(x=bx + bx[::-1], y=[float(band.high[i]) for i in run]
                                         + [float(band.low[i]) for i in run][::-1],
                                         mode="lines", fill="toself", fillcolor=_rgba(c, 0.18), line=dict(width=0),
                                         hoverinfo="skip", showlegend=False, legendgroup=cell, name=f"{cell} CI"))
            lines.append(go.Scatter(x=band.x, y=band.mean, mode="lines", name=cell, legendgroup=cell,
                                    line=dict(color=c, width=2, shape="hv" if best else "linear"),
                                    customdata=band.n,
                                    hovertemplate=f"{x}=%{{x:.4g}}<br>mean {metric}=%{{y:.4g}} over "
                                                  "%{customdata} seeds<extra>%{fullData.name}</extra>"))
        for line in lines:  # means on top of every band
            fig.add_trace(line)
    pct = f"{level * 100:g}%"
    what = f"best-so-far {metric}" if best else metric
    return _layout(fig, f"{what}: mean over seeds with {pct} CI (where ≥ 2 seeds) vs {X_AXES[x]}", X_AXES[x],
                   (f"best-so-far {y_title}" if best and y_title else y_title) or what)


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
