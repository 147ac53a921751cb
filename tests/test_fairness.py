"""Comparisons a busy machine cannot fool: curves on a common grid, leaderboards that do
not rank timing noise, and the warnings every table prints when a comparison is unfair."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.analysis import fairness, plots, stats
from tests.test_analysis import fake_results, tiny_study  # noqa: F401 (a fixture)


# ---------------------------------------------------------------------------- curves
def _seeds():
    # three seeds evaluated at different x (a compute clock never lines them up)
    return [([0, 10, 20], [10.0, 8.0, 6.0]),
            ([5, 15], [9.0, 7.0]),
            ([0, 20, 40], [12.0, 6.0, 0.0])]


def test_band_is_the_interpolated_mean_and_t_interval_where_two_seeds_exist():
    band = stats.band_on_grid(_seeds(), level=0.95)
    assert list(band.x) == [0, 5, 10, 15, 20, 40]
    assert list(band.n) == [2, 3, 3, 3, 2, 1]        # no seed is extrapolated past its range
    at5 = [9.0, 9.0, 10.5]                           # seed 1 and 3 interpolated, seed 2 measured
    s = stats.summarize(at5)
    assert band.mean[1] == pytest.approx(np.mean(at5))
    assert band.low[1] == pytest.approx(s.ci_low) and band.high[1] == pytest.approx(s.ci_high)
    at0 = stats.summarize([10.0, 12.0])
    assert band.mean[0] == 11.0 and band.low[0] == pytest.approx(at0.ci_low)
    assert band.mean[5] == 0.0 and math.isnan(band.low[5]) and math.isnan(band.high[5])   # one seed: no band


def test_best_so_far_band_holds_the_last_best_between_evaluations():
    assert list(stats.best_so_far([5.0, 7.0, float("nan"), 3.0])) == [5.0, 5.0, 5.0, 3.0]
    assert list(stats.best_so_far([0.5, 0.4, 0.9], higher_is_better=True)) == [0.5, 0.5, 0.9]
    band = stats.band_on_grid([([0, 10, 20], [5.0, 5.0, 3.0]), ([0, 15, 20], [6.0, 4.0, 4.0])], step=True)
    assert list(band.x) == [0, 10, 15, 20]
    assert band.mean[2] == pytest.approx((5.0 + 4.0) / 2)   # seed 1 held at 5 until its next evaluation


def _curves():
    rows = []
    for cell in ("scratch", "finetune"):
        for seed, (xs, ys) in enumerate(_seeds()):
            for x, y in zip(xs, ys):
                rows.append({"trial_id": f"{cell}-s{seed}", "cell": cell, "seed": seed, "iteration": x,
                             "compute_s": x / 10, "metric.swd": y + (0 if cell == "scratch" else -3)})
    return pd.DataFrame(rows)


def test_band_figure_draws_the_band_only_where_two_seeds_have_data():
    fig = plots.band_figure(_curves(), "swd", "compute_s", y_title="swd ×10³, lower is better")
    fills = [t for t in fig.data if t.fill == "toself"]
    means = [t for t in fig.data if t.fill != "toself"]
    assert len(fills) == 2 and [t.name for t in means] == ["scratch", "finetune"]
    # the polygon goes out along the upper bound and back along the lower one, over x with n >= 2
    assert list(fills[0].x) == [0, 0.5, 1.0, 1.5, 2.0, 2.0, 1.5, 1.0, 0.5, 0]
    assert list(means[0].x) == [0, 0.5, 1.0, 1.5, 2.0, 4.0] and list(means[0].customdata) == [2, 3, 3, 3, 2, 1]
    assert fig.layout.yaxis.title.text == "swd ×10³, lower is better"
    best = plots.band_figure(_curves(), "swd", "iteration", best=True)
    assert best.data[-1].line.shape == "hv" and "best-so-far" in best.layout.title.text
    with pytest.raises(ValueError, match="x 'wall_s': expected one of iteration, samples_seen, compute_s"):
        plots.band_figure(_curves(), "swd", "wall_s")


def test_per_trial_lines_tell_the_seeds_of_one_configuration_apart():
    fig = plots.metric_figure(_curves(), "swd", "iteration")
    scratch = [t for t in fig.data if t.legendgroup == "scratch"]
    assert [t.name for t in scratch] == ["scratch · seed 0", "scratch · seed 1", "scratch · seed 2"]
    assert len({t.line.color for t in scratch}) == 1 and len({t.line.dash for t in scratch}) == 3
    assert all(t.showlegend for t in scratch)


def test_axis_titles_carry_scale_and_direction():
    assert plots.axis_title("swd", "×10³", "min") == "swd ×10³, lower is better"
    assert plots.axis_title("recall_effnet", "fraction in [0, 1]", "max") == "recall_effnet, higher is better"


# ----------------------------------------------------------------------- leaderboards
def test_noise_level_cost_differences_are_ties():
    # the newcomer's leaderboard: 60.14 s vs 60.22 s under one budget is noise
    assert stats.pareto_ranks([140.1, 83.8], [60.14, 60.22]) == [2, 1]
    assert stats.pareto_ranks([10.0, 12.0], [100.0, 94.0]) == [1, 1]       # 6 % cheaper: a real trade-off
    assert stats.pareto_ranks([10.0, 12.0], [100.0, 96.0]) == [1, 2]       # 4 % cheaper: a tie, 10 wins
    assert stats.pareto_ranks([10.0, 10.0], [100.0, 94.0]) == [2, 1]       # equal quality, really cheaper
    assert stats.pareto_ranks([10.0, 10.0], [100.0, 96.0]) == [1, 1]
    assert stats.pareto_ranks([10.0, 12.0], [100.0, 94.0], margin=0.0) == [1, 1]


def test_leaderboard_ties_noise_and_ranks_a_fixed_budget_by_quality():
    from harness.analysis import leaderboard

    extra = {"worst": {"train_s": 60.14, "compute_s": 60.14}, "best": {"train_s": 60.22, "compute_s": 60.22}}
    res = fake_results({"worst": [("completed", 140.0)] * 2, "best": [("completed", 84.0)] * 2}, extra=extra)
    table = leaderboard([res], metric="fid")
    assert dict(zip(table.data["configuration"], table.data["pareto_rank"])) == {"best": 1, "worst": 2}
    assert "5% margin" in table.to_markdown() and "compute s" in table.columns
    fixed = fake_results({"worst": [("completed", 140.0)] * 2, "best": [("completed", 84.0)] * 2}, extra=extra,
                         study={"name": "s", "fixed_budget": {"samples": 25600, "seconds": None, "clock": "compute"}})
    table = leaderboard([fixed], metric="fid")
    assert table.data["pareto_rank"].isna().all() and list(table.data["configuration"]) == ["best", "worst"]
    assert "fixed budget (samples 25600): the budget is the cost" in table.to_markdown()


# --------------------------------------------------------------------------- warnings
def _timed(iterations, clock="wall", evaluations=5, load=1.0):
    extra = {}
    for cell, its in iterations.items():
        extra[cell] = {"config.optimization.time_budget_s": 60.0, "config.optimization.clock": clock,
                       "evaluations": evaluations, "host_load_max": load, "host_cpus": 2}
    res = fake_results({cell: [("completed", 50.0)] * len(its) for cell, its in iterations.items()}, extra=extra)
    frame = res.frame
    frame["iterations"] = [i for its in iterations.values() for i in its]
    frame["samples_seen"] = frame["iterations"] * 32
    return res


def test_a_starved_comparison_is_flagged_loudly():
    from harness.analysis import comparison_table, pairwise_table

    starved = _timed({"scratch": [135, 171], "finetune": [150, 160]}, evaluations=1, load=9.3)
    found = fairness.concerns(starved.frame)
    assert len(found) == 3
    assert found[0].startswith("iterations differ by 27 % (more than 20 %)") and "scratch 135–171" in found[0]
    assert "wall-clock budget" in found[0]
    assert "4 trial(s) were evaluated fewer than 3 times (1:" in found[1]
    assert "load average up to 9.3 on 2 cores" in found[2] and "they trained less" in found[2]
    table = pairwise_table(starved, metric="best.fid")
    assert table.warnings == found and "**WARNING:** iterations differ" in table.to_markdown()
    assert 'class="gb-warn"><strong>Warning:</strong> iterations differ' in table.to_html()
    assert "135–171" in table.to_markdown()                      # the iterations column
    assert comparison_table(starved, metrics=["best.fid"]).warnings == found


def test_a_fair_comparison_prints_no_warning():
    assert fairness.concerns(_timed({"scratch": [800, 800], "finetune": [800, 790]}).frame) == []
    # within 20 %, under the compute clock: the methods' own costs; nothing to flag
    assert fairness.concerns(_timed({"a": [700, 690], "b": [800, 810]}, clock="compute").frame) == []
    spread = fairness.concerns(_timed({"a": [600, 610], "b": [800, 810]}, clock="compute").frame)
    assert len(spread) == 1 and "each method's own cost per step" in spread[0]
    # iteration or samples budgets are equal by construction: no time budget, no spread check
    untimed = _timed({"a": [100, 100], "b": [800, 800]})
    untimed.frame["config.optimization.time_budget_s"] = None
    assert fairness.concerns(untimed.frame) == []
    # load within the tolerance (Ray's own processes beside two trials on two cores)
    assert fairness.concerns(_timed({"a": [800, 800]}, load=2.4).frame) == []


def test_permutation_floor_is_computed_for_the_seeds_compared():
    from harness.analysis import pairwise_table
    from harness.analysis.tables import permutation_floor

    assert permutation_floor(3, 3) == pytest.approx(0.1) and permutation_floor(2, 2) == pytest.approx(1 / 3)
    res = fake_results({"base": [("completed", 10.0), ("completed", 11.0)],
                        "aug": [("completed", 8.0), ("completed", 8.5)]})
    md = pairwise_table(res, metric="best.fid").to_markdown()
    assert "0.333 for 2 vs 2 seeds (it cannot go below 0.05)" in md
    res = fake_results({"base": [("completed", v) for v in (10.0, 11.0, 12.0, 13.0)],
                        "aug": [("completed", v) for v in (8.0, 8.5, 9.0, 9.5)]})
    assert "0.0286 for 4 vs 4 seeds (it can go below 0.05)" in pairwise_table(res, metric="best.fid").to_markdown()


def test_every_table_calls_its_first_column_configuration():
    from harness.analysis import ablation_table, comparison_table, pairwise_table

    res = fake_results({"base": [("completed", 10.0)] * 2, "aug": [("completed", 8.0)] * 2},
                       study={"name": "s", "variants": [{"name": "base"}, {"name": "aug"}]})
    for table in (comparison_table(res, metrics=["best.fid"]), pairwise_table(res, metric="best.fid"),
                  ablation_table(res, metric="best.fid")):
        assert table.columns[0] == "configuration", table.name
    assert json.loads(json.dumps(fairness.concerns(res.frame))) == []


def test_the_runner_and_the_cli_say_when_trials_were_evaluated_too_rarely(tiny_study, capsys):
    """The tiny study's trials train 20 iterations, evaluated at 10 and 20: two points each."""
    from harness.cli import main
    from harness.runner import StudyRunner
    from harness.store import StudyRecord
    from harness.study import parse_study

    study = parse_study(StudyRecord(tiny_study).read_study())
    lines = []
    runner = StudyRunner(study, tiny_study.parent, out=lines.append)
    found = runner.fairness_warnings()   # (a load warning too, when this machine is busy now)
    assert "3 trial(s) were evaluated fewer than 3 times (2:" in found[0]
    assert main(["table", str(tiny_study), "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert "ganbench: WARNING: 3 trial(s) were evaluated fewer than 3 times" in err
    assert main(["table", str(tiny_study)]) == 0
    assert "**WARNING:** 3 trial(s) were evaluated fewer than 3 times" in capsys.readouterr().out


def test_the_report_says_the_warnings_once_in_a_banner(tiny_study, tmp_path):
    from harness.analysis.report import write_report

    page = write_report(tiny_study, out=tmp_path / "r.html", png=False, notice=lambda s: None,
                        plotlyjs="cdn").read_text()
    banner = page[page.index('class="gb-banner"'):page.index('id="tables"')]
    assert "This comparison may be unfair." in banner and "evaluated fewer than 3 times" in banner
    assert page.count("evaluated fewer than 3 times") == 1
