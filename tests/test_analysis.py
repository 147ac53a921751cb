"""Analysis: statistics on constructed numbers (known means, intervals, p-values), tables and
leaderboards on constructed result frames, rendering, and the report of a tiny real study
(in headless Chromium where one is installed)."""
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis import stats
from harness.analysis.results import StudyResults, cell_of, short_value
from harness.errors import ConfigError
from tests.conftest import run_study_inline, tiny_config


# --------------------------------------------------------------------------- stats
def test_summary_t_interval_matches_the_textbook():
    s = stats.summarize([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2}
    assert s.ci_low == pytest.approx(2.0 - half, abs=1e-9) and s.ci_high == pytest.approx(2.0 + half, abs=1e-9)
    s90 = stats.summarize([1.0, 2.0, 3.0], level=0.90)
    assert s90.half_width == pytest.approx(2.919985580355516 / math.sqrt(3), abs=1e-9)


def test_summary_drops_missing_values_and_degrades_honestly():
    s = stats.summarize([5.0, None, float("nan"), float("inf"), "x"])
    assert s.n == 1 and s.mean == 5.0 and math.isnan(s.std) and math.isnan(s.ci_low)
    assert stats.summarize([]).n == 0 and math.isnan(stats.summarize([]).mean)
    with pytest.raises(ValueError, match="ci method"):
        stats.summarize([1, 2], method="jackknife")
    with pytest.raises(ValueError, match="confidence level"):
        stats.summarize([1, 2], level=95)


def test_bootstrap_interval_is_seeded_and_sensible():
    x = np.arange(1.0, 11.0)
    a = stats.summarize(x, method="bootstrap", seed=3)
    b = stats.summarize(x, method="bootstrap", seed=3)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    # the percentile bootstrap of the mean of 1..10: ~ mean ± 1.96 * sd/sqrt(n) = 5.5 ± 1.78
    assert 3.4 < a.ci_low < 4.1 and 6.9 < a.ci_high < 7.6
    const = stats.summarize([4.0, 4.0, 4.0], method="bootstrap")
    assert const.ci_low == const.ci_high == 4.0


def test_welch_by_hand_and_against_scipy():
    from scipy import stats as sps

    a, b = [1, 2, 3, 4, 5], [2, 4, 6, 8, 10]
    r = stats.welch(a, b)
    # var(a)/5 = 0.5, var(b)/5 = 2: t = -3 / sqrt(2.5), df = 2.5^2 / (0.5^2/4 + 2^2/4)
    assert r.statistic == pytest.approx(-3 / math.sqrt(2.5)) and r.df == pytest.approx(6.25 / 1.0625)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert math.isnan(stats.welch([1], [2, 3]).p_value)
    assert stats.welch([1, 1], [2, 2]).p_value == 0.0 and math.isnan(stats.welch([1, 1], [1, 1]).p_value)


def test_exact_permutation_test_has_the_known_floor():
    r = stats.permutation_test([1, 2, 3], [4, 5, 6])
    assert r.exact and r.n_resamples == 20 and r.p_value == pytest.approx(0.1)  # 2 of C(6,3) splits
    assert stats.permutation_test([1, 2, 3], [1, 2, 3]).p_value == pytest.approx(1.0)
    # [1,2] vs [3,5,10]: |diff| >= 4.5 in 2 of the 10 splits ({1,2} and {5,10} as group a)
    assert stats.permutation_test([1, 2], [3, 5, 10]).p_value == pytest.approx(0.2)


def test_monte_carlo_permutation_approximates_the_exact_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 6), rng.normal(1, 1, 6)
    exact = stats.permutation_test(a, b)
    mc = stats.permutation_test(a, b, max_exact=10, n_resamples=20000, seed=1)
    assert exact.exact and not mc.exact
    assert mc.p_value == pytest.approx(exact.p_value, abs=0.015) and mc.p_value >= 1 / 20001


def test_pareto_ranks():
    #              quality  cost
    # a: 10, 5   rank 1 (best quality)
    # b: 12, 1   rank 1 (cheapest)
    # c: 12, 6   rank 2 (beaten by a and b)
    # d: 20, 7   rank 3
    ranks = stats.pareto_ranks([10, 12, 12, 20, None], [5, 1, 6, 7, 1])
    assert ranks == [1, 1, 2, 3, None]
    assert stats.pareto_ranks([0.9, 0.5], [1, 1], higher_is_better=True) == [1, 2]


# ------------------------------------------------------------------ constructed results
PROTO = {"extractor": "inception", "n_fake": 100, "n_real": 100, "reference": "abc", "seed": 0}


def fake_results(values, name="s", protocol=None, study=None, extra=None):
    """StudyResults over constructed rows: values = {cell: [(status, best fid), ...]}."""
    rows = []
    for order, (cell, runs) in enumerate(values.items()):
        for seed, (status, fid) in enumerate(runs):
            proto = dict(protocol or PROTO, seed=seed)
            row = {"study": name, "trial_id": f"{cell}-s{seed}", "phase": "grid", "cell": cell, "cell_order": order,
                   "status": status, "seed": seed, "labels": json.dumps({"variant": cell, "seed": seed}),
                   "best.fid": fid, "final.fid": None if fid is None else fid + 1.0,
                   "protocol.fid": json.dumps(proto, sort_keys=True), "best_iter.fid": 100 * (seed + 1),
                   "best_wall_s.fid": 10.0 * (seed + 1), "best_train_s.fid": 8.0 * (seed + 1),
                   "train_s": 50.0 + order, "wall_s": 60.0 + order, "samples_seen": 1000, "peak_rss_mb": 100.0 + seed,
                   "cpu_h": (60.0 + order) / 3600, "gpu_h": 0.0, "iterations": 300}
            rows.append({**row, **(extra or {}).get(cell, {})})
    return StudyResults(root=Path("/nonexistent") / name, name=name,
                        study=study or {"name": name}, frame=pd.DataFrame(rows), cells=list(values))


def test_comparison_table_means_intervals_and_what_it_does_not_count():
    from harness.analysis import comparison_table

    res = fake_results({"base": [("completed", 10.0), ("completed", 12.0), ("completed", 14.0)],
                        "aug": [("completed", 8.0), ("diverged", 9.0), ("failed", None), ("running", 3.0)]})
    table = comparison_table(res, metrics=["best.fid"])
    data = table.data.set_index("cell")
    assert data.loc["base", "n"] == 3 and data.loc["base", "best.fid.mean"] == 12.0
    assert data.loc["base", "best.fid.std"] == 2.0
    half = 4.302652729911275 * 2 / math.sqrt(3)
    assert data.loc["base", "best.fid.ci_high"] == pytest.approx(12 + half)
    # the diverged seed counts (its best before blowing up is a measurement); failed and
    # running ones do not, and the table says so
    assert data.loc["aug", "n"] == 2 and data.loc["aug", "diverged"] == 1 and data.loc["aug", "best.fid.mean"] == 8.5
    assert data.loc["aug", "not_counted"] == "1 failed, 1 running" or data.loc["aug", "not_counted"] == \
        "1 running, 1 failed"
    assert data.loc["base", "best_iter.fid.mean"] == 200 and data.loc["base", "peak_rss_mb.max"] == 102.0
    md = table.to_markdown()
    assert "| aug | 2 (1 diverged) | 300 | **8.50 ± 0.707** |" in md  # lower FID is better: bold
    assert "Not counted (unfinished or failed): aug:" in md


def test_protocols_must_agree_but_the_eval_seed_may_differ():
    from harness.analysis import comparison_table

    res = fake_results({"a": [("completed", 1.0), ("completed", 2.0)], "b": [("completed", 3.0)]},
                       extra={"b": {"protocol.fid": json.dumps(dict(PROTO, n_fake=50))}})
    with pytest.raises(ConfigError, match=r"fid was measured under 2 that differ in n_fake: n_fake=100 .*n_fake=50"):
        comparison_table(res)
    ok = fake_results({"a": [("completed", 1.0), ("completed", 2.0)]})  # seeds 0, 1 in the protocol
    assert comparison_table(ok).data["n"].tolist() == [2]


def test_group_by_a_config_column_and_refuse_an_unknown_one():
    from harness.analysis import comparison_table

    res = fake_results({"a": [("completed", 1.0)], "b": [("completed", 3.0)], "c": [("completed", 5.0)]},
                       extra={"a": {"config.augment.policy": "none"}, "b": {"config.augment.policy": "ada"},
                              "c": {"config.augment.policy": "ada"}})
    data = comparison_table(res, by=["augment.policy"]).data.set_index("config.augment.policy")
    assert data.loc["ada", "n"] == 2 and data.loc["ada", "best.fid.mean"] == 4.0
    with pytest.raises(ConfigError, match="--by: got 'nope'"):
        comparison_table(res, by=["nope"])
    with pytest.raises(ConfigError, match="--metric: got 'kid'; expected a metric the study measured: fid"):
        comparison_table(res, metrics=["kid"])


def test_pairwise_table_p_values_and_baseline_choice():
    from harness.analysis import pairwise_table

    res = fake_results({"base": [("completed", 1.0), ("completed", 2.0), ("completed", 3.0)],
                        "better": [("completed", -3.0), ("completed", -2.0), ("completed", -1.0)],
                        "same": [("completed", 1.0), ("completed", 2.0), ("completed", 3.0)]})
    table = pairwise_table(res, metric="best.fid")
    data = table.data.set_index("configuration")
    assert data.loc["better", "diff"] == -4.0 and bool(data.loc["better", "better"])
    assert data.loc["better", "p_welch"] == pytest.approx(stats.welch([-3, -2, -1], [1, 2, 3]).p_value)
    assert data.loc["better", "p_permutation"] == pytest.approx(0.1)
    assert bool(data.loc["better", "significant"])  # Welch p ~ 0.007
    assert data.loc["same", "p_welch"] == pytest.approx(1.0) and not data.loc["same", "significant"]
    assert "base (baseline)" in table.to_markdown()
    perm = pairwise_table(res, metric="best.fid", test="permutation").data.set_index("configuration")
    assert not perm.loc["better", "significant"]  # the exact test cannot go below 0.1 with 3 vs 3
    flipped = pairwise_table(res, metric="best.fid", baseline="better").data.set_index("configuration")
    assert flipped.loc["base", "diff"] == 4.0 and not flipped.loc["base", "better"]
    with pytest.raises(ConfigError, match="--baseline: got 'nope'; expected one of the configurations: base; better"):
        pairwise_table(res, baseline="nope")
    with pytest.raises(ConfigError, match="--test"):
        pairwise_table(res, test="t")


def test_ablation_table_marks_grid_axes_against_the_first_value():
    from harness.analysis import ablation_table

    study = {"name": "s", "grid": {"augment.policy": ["none", "diffaugment"],
                                   "regularizers": [[], [{"name": "cr", "weight": 10}]]}}
    cells = {}
    for aug in ("none", "diffaugment"):
        for reg in ([], [{"name": "cr", "weight": 10}]):
            labels = {"augment.policy": aug, "regularizers": json.dumps(reg, sort_keys=True, separators=(",", ":"))}
            cells[cell_of(labels, "grid")] = labels
    values = {c: [("completed", 10.0 + i), ("completed", 12.0 + i)] for i, c in enumerate(cells)}
    extra = {c: {"labels": json.dumps(labels)} for c, labels in cells.items()}
    table = ablation_table(fake_results(values, study=study, extra=extra), metric="best.fid")
    assert table.columns == ["configuration", "diffaugment", "cr(weight=10)", "n", "best.fid", "95% CI"]
    marks = [[c.text for c in row[1:3]] for row in table.rows]
    assert marks == [["", ""], ["", "✓"], ["✓", ""], ["✓", "✓"]]
    assert table.rows[0][4].bold and table.rows[0][4].text == "11.00 ± 1.41"
    latex = table.to_latex()
    assert r"\checkmark" in latex and r"11.00 $\pm$ 1.41" in latex and r"\textbf{11.00 $\pm$ 1.41}" in latex


def test_ablation_table_of_named_variants_shows_what_each_changes():
    from harness.analysis import ablation_table

    study = {"name": "s", "variants": [
        {"name": "scratch", "set": {"transfer.name": "scratch"}},
        {"name": "tc", "set": {"transfer.name": "minegan"}},
        {"name": "tc-ad", "set": {"transfer.name": "minegan", "augment.policy": "diffaugment"}},
        {"name": "tc-ad-rc", "set": {"transfer.name": "minegan", "augment.policy": "diffaugment",
                                     "regularizers": [{"name": "cr", "weight": 10}],
                                     "optimization.batch_size": 16}}]}
    values = {v["name"]: [("completed", 50.0 - i)] for i, v in enumerate(study["variants"])}
    # the resolved configs: what each variant changes, with the kwargs / sources that come
    # with a method (they follow from it and get no column of their own)
    extra = {v["name"]: {"config.optimization.batch_size": v["set"].get("optimization.batch_size", 24),
                         "config.transfer.name": v["set"]["transfer.name"],
                         "config.transfer.kwargs": "{}" if v["name"] == "scratch" else '{"mine_iterations": 500}',
                         "config.augment.policy": v["set"].get("augment.policy", "none"),
                         "config.regularizers": json.dumps([{"name": "cr", "weight": 10.0, "kwargs": {}}]
                                                           if "regularizers" in v["set"] else [])}
             for v in study["variants"]}
    table = ablation_table(fake_results(values, study=study, extra=extra))
    assert table.columns == ["configuration", "minegan", "diffaugment", "cr", "optimization.batch_size",
                             "n", "best.fid", "95% CI"]
    assert [[c.text for c in row[1:5]] for row in table.rows] == [
        ["", "", "", "24"], ["✓", "", "", "24"], ["✓", "✓", "", "24"], ["✓", "✓", "✓", "16"]]


def test_leaderboard_ranks_merges_and_refuses_mixed_protocols():
    from harness.analysis import leaderboard

    a = fake_results({"x": [("completed", 30.0), ("completed", 32.0)], "y": [("completed", 20.0)]}, name="A")
    b = fake_results({"z": [("completed", 25.0), ("completed", 27.0)]}, name="B",
                     extra={"z": {"train_s": 10.0}})
    table = leaderboard([a, b], metric="fid")
    data = table.data
    assert list(data["configuration"]) == ["y", "z", "x"] and list(data["rank"]) == [1, 2, 3]
    assert list(data["study"]) == ["A", "B", "A"]
    # y is best (20) but costs 51 s; z is cheaper (10 s): both are on the front; x is beaten by both
    assert list(data["pareto_rank"]) == [1, 1, 2]
    assert data.set_index("configuration").loc["x", "mean"] == 31.0
    assert data.set_index("configuration").loc["x", "cpu_h"] == pytest.approx(60 / 3600)
    for fmt_ in ("md", "html", "csv", "latex"):
        assert "Leaderboard" in table.render(fmt_) or fmt_ == "csv"
    other = fake_results({"w": [("completed", 1.0)]}, name="C", protocol=dict(PROTO, extractor="effnet"))
    with pytest.raises(ConfigError, match=r"differ in extractor: extractor=inception \(A/x-s0.*extractor=effnet \(C/w"):
        leaderboard([a, other], metric="fid")
    with pytest.raises(ConfigError, match="--metric: got 'swd'; expected a metric every study measured; A"):
        leaderboard([a, b], metric="swd")
    with pytest.raises(ConfigError, match="--which"):
        leaderboard([a], which="worst")


def test_renderers_escape_their_formats():
    from harness.analysis.render import Cell, Table, fmt

    t = Table("50% of a_b", ["a|b", "<x>"], [[Cell("1 & 2"), Cell("<b>", bold=True)]], pd.DataFrame([{"a": 1}]),
              notes=["n_fake ± 1"])
    assert "a\\|b" in t.to_markdown() and "**<b>**" in t.to_markdown()
    latex = t.to_latex()
    assert r"50\% of a\_b" in latex and r"1 \& 2" in latex and r"n\_fake $\pm$ 1" in latex
    page = t.to_html()
    assert "&lt;x&gt;" in page and "<strong>&lt;b&gt;</strong>" in page and "<b>" not in page
    assert t.to_csv().splitlines() == ["a", "1"]
    assert [fmt(v) for v in (None, float("nan"), 0.0, 3.0, 12.345, 123.45, 12345.6, 0.012345)] == \
        ["—", "—", "0", "3.00", "12.35", "123.5", "12346", "0.0123"]
    with pytest.raises(ValueError, match="format"):
        t.render("docx")


def test_labels_read_as_compact_cells():
    assert short_value('[{"name":"cr","weight":10}]') == "cr(weight=10)"
    assert short_value("[]") == "none" and short_value(0.0002) == "0.0002"
    assert cell_of({"variant": "tc-ad", "seed": 3}, "grid") == "tc-ad"
    assert cell_of({"optimization.lr_g": 0.001, "rank": 0, "from": "search-0002", "seed": 7}, "finalist") == \
        "#0 optimization.lr_g=0.001"


# --------------------------------------------------------------- a tiny real study
def tiny_grid(name="tinyreport", **extra):
    base = tiny_config(**{"eval.metrics": ["swd"], "optimization.iterations": 20, "eval.every": 10,
                          "sample_every": 10})
    data = {"name": name, "base": base, "grid": {"augment.policy": ["none", "ada"]}, "seeds": [0, 1]}
    data.update(extra)
    return data


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A 2 x 2 grid (no augmentation vs ADA, two seeds) run in-process, one trial left
    pending as in a study still running."""
    root = tmp_path_factory.mktemp("analysis")
    saved = os.environ.get("GANBENCH_CACHE")
    os.environ["GANBENCH_CACHE"] = str(root / "cache")
    try:
        study_root = run_study_inline(tiny_grid(), root / "results", only={"c000-s0", "c000-s1", "c001-s0"})
    finally:
        if saved is None:
            os.environ.pop("GANBENCH_CACHE", None)
        else:
            os.environ["GANBENCH_CACHE"] = saved
    return study_root


def test_summary_records_when_the_best_was_reached(tiny_study):
    from harness.summary import summarize

    frame = summarize(tiny_study).set_index("trial_id")
    row = frame.loc["c000-s0"]
    series = [json.loads(line) for line in (tiny_study / "trials" / "c000-s0" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in series if "metrics" in r]
    first_best = next(r for r in evals if r["metrics"]["swd"] == row["best.swd"])
    assert row["best_iter.swd"] == first_best["iteration"] and row["best_wall_s.swd"] == first_best["wall_s"]
    assert frame.loc["c001-s1", "status"] == "pending"


def test_report_of_a_study_still_running(tiny_study, tmp_path):
    from harness.analysis import comparison_table, load_study
    from harness.analysis.report import write_report

    res = load_study(tiny_study)
    data = comparison_table(res).data.set_index("cell")
    assert data.loc["augment.policy=none", "n"] == 2 and data.loc["augment.policy=ada", "n"] == 1
    assert data.loc["augment.policy=ada", "not_counted"] == "1 pending"
    lines = []
    out = write_report(tiny_study, out=tmp_path / "r.html", png=False, notice=lines.append, plotlyjs="cdn")
    page = out.read_text()
    over_time = page[page.index('id="over-time"'):page.index('id="protocols"')]
    assert over_time.count("<img") == 2 * 2 and "iteration 10" in over_time and "iteration 20" in over_time
    for anchor in ('id="comparison"', 'id="ablation"', 'id="pairwise"', 'id="leaderboard"', 'id="protocols"',
                   'id="fig-swd_band_iteration"', 'id="fig-swd_band_compute_s"', 'id="fig-swd_best_compute_s"',
                   'id="fig-swd_trials_compute_s"', 'id="fig-swd_trials_wall"', 'id="fig-losses"', 'id="fig-ada_p"',
                   'id="glossary"', r'"swd \u00d710\u00b3, lower is better"',
                   "data:image/png;base64,", "cdn.plot.ly/plotly-", "still running or pending"):
        assert anchor in page, anchor
    assert len(page) < 2_000_000  # CDN: plotly.js not inlined
    assert not (tmp_path / "r_files").exists()
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # readable like any file open() makes


def test_report_without_a_browser_skips_png_with_one_line(tiny_study, tmp_path, monkeypatch):
    from harness.analysis.report import write_report

    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    lines = []
    out = write_report(tiny_study, out=tmp_path / "r.html", png=True, notice=lines.append)
    assert out.exists() and not (tmp_path / "r_files").exists()
    skipped = [line for line in lines if "PNG export skipped" in line]
    assert len(skipped) == 1 and "apt-get install chromium" in skipped[0]


def test_cli_table_report_and_leaderboard(tiny_study, tmp_path, capsys):
    from harness.cli import main

    assert main(["table", str(tiny_study), "--kind", "ablation", "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert r"\begin{tabular}" in out and "ada" in out
    assert main(["table", str(tiny_study), "--kind", "pairwise", "--test", "permutation"]) == 0
    assert "p (permutation)" in capsys.readouterr().out
    assert main(["table", str(tiny_study), "--format", "csv", "--by", "augment.policy"]) == 0
    assert capsys.readouterr().out.startswith("config.augment.policy,n,diverged")
    assert main(["report", str(tiny_study), "--no-png", "--out", str(tmp_path / "rep.html")]) == 0
    assert (tmp_path / "rep.html").stat().st_size > 3_000_000  # plotly.js inlined: works offline
    assert main(["leaderboard", str(tiny_study), "--format", "html", "--out", str(tmp_path / "lb.html")]) == 0
    assert '<table class="gb-table" id="leaderboard">' in (tmp_path / "lb.html").read_text()
    assert main(["table", str(tiny_study), "--metric", "fid"]) == 2
    assert "--metric: got 'fid'" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2  # not a study directory
    # another study measured with another sample count: a leaderboard refuses to mix them
    other = run_study_inline(tiny_grid("other", seeds=[0], grid={"augment.policy": ["none"]},
                                       base=tiny_config(**{"eval.metrics": ["swd"], "optimization.iterations": 10,
                                                           "eval.n_samples": 16, "eval.every": 10})),
                             tmp_path / "results")
    capsys.readouterr()
    assert main(["leaderboard", str(tiny_study), str(other)]) == 2
    err = capsys.readouterr().err
    assert "ONE protocol" in err and "n_fake" in err and "other/c000-s0" in err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian: apt-get install chromium; .ci/run installs it)")
def test_report_renders_in_headless_chromium(tiny_study, tmp_path):
    """The self-contained report loads with no console message, its tables are there and
    plotly drew its figures (svg.main-svg exists only after plotly.js ran); the PNG
    export wrote every figure through one server."""
    from harness.analysis.report import write_report

    lines = []
    out = write_report(tiny_study, out=tmp_path / "report.html", png=True, notice=lines.append)
    pngs = sorted(p.name for p in (tmp_path / "report_files").glob("*.png"))
    assert pngs == ["ada_p.png", "losses.png", "swd_band_compute_s.png", "swd_band_iteration.png",
                    "swd_best_compute_s.png", "swd_trials_compute_s.png", "swd_trials_wall.png"]
    assert all((tmp_path / "report_files" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--window-size=1400,3000"]
    run = subprocess.run([CHROMIUM, *flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    dom = run.stdout
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    for table in ("comparison", "ablation", "pairwise", "leaderboard", "glossary", "protocols", "status-counts"):
        assert f'<table class="gb-table" id="{table}">' in dom, table
    assert dom.count('class="main-svg"') >= 7  # every figure drawn
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000
