"""The Python API: what the ``ganbench`` commands do, as functions (docs/api.md).

The commands call these very functions with option objects built from their flags, so a
notebook and the command line cannot drift apart::

    ganbench validate STUDY --preset cpu          validate("STUDY", StudyOptions(preset="cpu"))
    ganbench trial CONFIG --out DIR               trial("CONFIG", "DIR", TrialOptions(set=[...]))
    ganbench run STUDY --results R --resume       run("STUDY", RunOptions(results="R", resume=True))
    ganbench summary DIR                          trials("DIR")   (one row per trial)
    (no command: the curves the report plots)     reports("DIR")  (one row per report of each trial)
    ganbench table DIR --kind pairwise --ci t     table("DIR", "pairwise", AnalysisOptions(ci="t"))
    ganbench leaderboard DIR... --which final     leaderboard(["DIR", ...], LeaderboardOptions(which="final"))
    ganbench report DIR --no-png                  report("DIR", ReportOptions(png=False))
    (the report's figures, as plotly objects)     figures("DIR", AnalysisOptions(metric="swd"))

Every function also takes the options' fields as keywords (``table(d, "pairwise", ci="t")``).
``DIR`` is a study's results folder or its URI on object storage (pulled first). Bad input
raises :class:`harness.errors.ConfigError` naming the field, as the commands report it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Union

from harness.analysis.options import PHASES, AnalysisOptions, ReportOptions
from harness.errors import ConfigError

Overrides = Union[Dict[str, Any], Sequence[str], None]

__all__ = ["AnalysisOptions", "LeaderboardOptions", "ReportOptions", "RunOptions", "StudyOptions", "TrialOptions",
           "figures", "leaderboard", "open_study", "plan", "report", "reports", "run", "table", "trial", "trials",
           "validate"]


class _FromFlags:
    @classmethod
    def from_namespace(cls, args: Any) -> Any:
        """The options an argparse namespace holds (flags named like the fields)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


@dataclass
class StudyOptions(_FromFlags):
    # which of the study file's presets (e.g. cpu, gpu) when it defines presets
    preset: Optional[str] = None
    # dotted overrides, {"search.n_trials": 4} or ["search.n_trials=4"] (--set)
    set: Overrides = None
    # refuse a study planning more than this many trials (default 1000)
    max_trials: Optional[int] = None


@dataclass
class RunOptions(StudyOptions):
    # the results root: a folder, or object storage (s3://BUCKET/PREFIX); the study writes RESULTS/<name>/
    results: str = "results"
    # an existing Ray cluster (default $RAY_ADDRESS, else an embedded local Ray)
    address: Optional[str] = None
    # continue a study whose driver stopped
    resume: bool = False
    # with resume: continue trials whose dataset changed since they started (recorded)
    allow_new_data: bool = False


@dataclass
class TrialOptions(_FromFlags):
    # dotted overrides of the trial config, {"optimization.iterations": 100} or ["k=v"] (--set)
    set: Overrides = None
    # resume although the dataset changed since the trial started (recorded in env.json)
    allow_new_data: bool = False
    # a progress bar on stderr
    progress: bool = True


@dataclass
class LeaderboardOptions(_FromFlags):
    # metric key (default: the first study's primary metric)
    metric: Optional[str] = None
    # best value reached, or final value
    which: str = field(default="best")
    # which trials (default: finalists if any, else the grid, else the search)
    phase: Optional[str] = None
    # confidence level
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.which not in ("best", "final"):
            raise ConfigError("--which", self.which, "one of best, final")
        if self.phase is not None and self.phase not in PHASES:
            raise ConfigError("--phase", self.phase, "one of " + ", ".join(PHASES))


def _options(cls: type, options: Any, fields: Dict[str, Any]) -> Any:
    if options is None:
        return cls(**fields)
    if not isinstance(options, cls):
        raise ConfigError("options", type(options).__name__, f"a {cls.__name__}")
    return dataclasses.replace(options, **fields) if fields else options


def _overrides(value: Overrides) -> Dict[str, Any]:
    from harness.cli.common import overrides

    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return overrides(list(value))


def _trial_data(config: Any, sets: Overrides) -> Dict[str, Any]:
    """A trial config (a YAML file or a mapping) as plain data, overrides applied."""
    import copy

    from harness.cli.common import read_mapping
    from harness.spec import set_dotted

    data = copy.deepcopy(dict(config)) if isinstance(config, dict) else read_mapping(str(config), None, "trial settings")
    for key, value in _overrides(sets).items():
        set_dotted(data, key, value)
    return data


# ------------------------------------------------------------------------ studies
def plan(study: Union[str, os.PathLike, Dict[str, Any]], options: Optional[StudyOptions] = None, **fields: Any):
    """The study (a YAML file, or a mapping) validated and planned — every trial config
    checked, nothing run (``ganbench validate``/``describe``). A :class:`harness.study.Plan`:
    ``.trials`` (each with ``.trial_id``, ``.labels``, ``.spec``), ``.describe()``."""
    from harness.study import plan_study
    from harness.study.planning import MAX_TRIALS

    o = _options(StudyOptions, options, fields)
    if o.max_trials is not None and o.max_trials < 1:
        raise ConfigError("--max-trials", o.max_trials, "an integer >= 1")
    if isinstance(study, dict):
        import copy

        data, base_dir = copy.deepcopy(study), None
    else:
        from harness.cli.common import read_mapping

        data, base_dir = read_mapping(str(study), None, "study settings"), Path(study).parent
    return plan_study(data, base_dir, o.preset, _overrides(o.set), MAX_TRIALS if o.max_trials is None else o.max_trials)


def validate(config: Union[str, os.PathLike], options: Optional[StudyOptions] = None, **fields: Any):
    """A study file planned (a Plan) or a trial config checked (its TrialSpec)."""
    from harness.spec import load_yaml, parse_trial
    from harness.study import is_study

    o = _options(StudyOptions, options, fields)
    if is_study(load_yaml(str(config))):
        return plan(config, o)
    if o.preset is not None:
        raise ConfigError("--preset", o.preset, "a study file (this is a trial config; presets belong to studies)")
    return parse_trial(_trial_data(config, o.set))


def _print(line: str) -> None:
    print(line)  # looked up when called: Ray pickles the driver's callbacks by reference


def run(study: Any, options: Optional[RunOptions] = None, out: Optional[Callable[[str], None]] = None, **fields: Any):
    """Validate, then run (or resume) a study on Ray (``ganbench run``): a study file, a
    mapping, or a Plan; ``out`` takes the progress lines (default: print them). Returns
    the summary DataFrame (one row per trial)."""
    from harness.runner import run_study
    from harness.study import Plan

    o = _options(RunOptions, options, fields)
    planned = study if isinstance(study, Plan) else plan(study, o)
    return run_study(planned, o.results, address=o.address, resume=o.resume, out=out or _print,
                     allow_new_data=o.allow_new_data)


def trial(config: Union[str, os.PathLike, Dict[str, Any]], out: Union[str, os.PathLike],
          options: Optional[TrialOptions] = None, **fields: Any):
    """Run (or resume) one trial in this process into ``out`` (a folder or an object-storage
    URI), its dataset prepared first (``ganbench trial``). A :class:`harness.trial.TrialResult`:
    ``.status``, ``.iteration``, ``.last_report``, ``.error``."""
    from harness.cli.common import trial_record
    from harness.prepare import prepare_trial
    from harness.spec import parse_trial
    from harness.trial import run_trial

    o = _options(TrialOptions, options, fields)
    spec = parse_trial(_trial_data(config, o.set))
    record = trial_record(str(out))  # an unusable store is refused before the dataset is built
    prepare_trial(spec)
    return run_trial(spec, record, progress=o.progress, allow_new_data=o.allow_new_data)


# ------------------------------------------------------------------------ results
def open_study(location: Union[str, os.PathLike]):
    """A study's results (:class:`harness.analysis.StudyResults`: ``.frame``, ``.cells``,
    ``.metrics``, ...) from its folder or URI (on object storage: pulled first)."""
    from harness.analysis import load_study
    from harness.cli.common import open_study as open_record

    return load_study(open_record(str(location)).root)


def trials(location: Union[str, os.PathLike]):
    """One row per trial (``ganbench summary``): status, labels, cell, seed, best/final
    metrics, costs, ``config.*`` columns."""
    from harness.cli.common import open_study as open_record
    from harness.summary import summarize

    return summarize(open_record(str(location)).root)


def reports(location: Union[str, os.PathLike]):
    """One row per report row of every trial: trial_id, cell, seed, status, iteration,
    samples_seen, wall/train/compute seconds, ``metric.*``, ``loss.*``, ``augment.*``."""
    from harness.analysis import curves

    return curves(open_study(location))


def table(location: Union[str, os.PathLike], kind: str = "comparison", options: Optional[AnalysisOptions] = None,
          **fields: Any):
    """A table over seeds (``ganbench table --kind KIND``): ``.render("md"|"latex"|"html"|"csv")``,
    ``.warnings`` (why a comparison may be unfair)."""
    from harness.analysis import build_table

    return build_table(kind, open_study(location), _options(AnalysisOptions, options, fields))


def leaderboard(locations: Sequence[Union[str, os.PathLike]], options: Optional[LeaderboardOptions] = None,
                **fields: Any):
    """Configurations of one or more studies ranked under one protocol (``ganbench leaderboard``)."""
    from harness.analysis import leaderboard as build

    o = _options(LeaderboardOptions, options, fields)
    return build([open_study(d) for d in locations], metric=o.metric, which=o.which, phase=o.phase, level=o.level)


def figures(location: Union[str, os.PathLike], options: Optional[AnalysisOptions] = None, **fields: Any):
    """The report's figures by name (plotly Figures: ``.show()``, ``.write_html()``)."""
    from harness.analysis.report import build_figures

    o = _options(AnalysisOptions, options, fields)
    res = open_study(location)
    metric = o.metric or (res.default_metric() if res.metrics else None)
    return build_figures(res, metric, o.phase or res.default_phase(), o.level)


def report(location: Union[str, os.PathLike], options: Optional[ReportOptions] = None, out: Optional[os.PathLike] = None,
           notice: Callable[[str], None] = print, **fields: Any) -> Path:
    """Write the study's HTML report (``ganbench report``; default: DIR/report.html on its
    folder or store); returns the local path."""
    from harness.analysis.report import write_report
    from harness.cli.common import open_study as open_record

    return write_report(open_record(str(location)), out=out, options=_options(ReportOptions, options, fields),
                        notice=notice)
