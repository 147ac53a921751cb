"""Analysis of study results: tables over seeds, plots, leaderboards and the HTML report.

    results.py      load a study's results folder (summary rows + cells + costs), curves
    stats.py        mean/std/CI (t or bootstrap), Welch and permutation tests, Pareto ranks
    render.py       a Table rendered as Markdown, LaTeX, HTML or CSV
    kinds.py        table kinds registered by name (``@table_kind``): a new kind is one function
    tables.py       comparison, pairwise (vs a baseline) and ablation (✓) tables
    leaderboard.py  configurations of one or more studies ranked under one protocol
    suite.py        a benchmark suite: configurations ranked within each dataset, by mean rank
    options.py      AnalysisOptions / ReportOptions, shared by the CLI and this API
    plots.py        plotly figures: metric vs time/iterations, bands over seeds, losses,
                    ADA p, Optuna history and importances; PNG export through kaleido
    report.py       one self-contained HTML page per study

Read-only over the results: it works while a study runs and never writes into a trial.
Imports neither torch nor the variants: a metric's direction comes with its values.
"""
from harness.analysis.kinds import TABLES, build_table, table_kind, table_kinds
from harness.analysis.leaderboard import leaderboard
from harness.analysis.options import AnalysisOptions, ReportOptions
from harness.analysis.results import FINISHED, StudyResults, curves, load_study
from harness.analysis.suite import suite_table
from harness.analysis.tables import ablation_table, comparison_table, pairwise_table

__all__ = ["FINISHED", "TABLES", "AnalysisOptions", "ReportOptions", "StudyResults", "ablation_table",
           "build_table", "comparison_table", "curves", "leaderboard", "load_study", "pairwise_table",
           "suite_table", "table_kind", "table_kinds"]
