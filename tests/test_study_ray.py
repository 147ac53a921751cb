"""Studies on an embedded local Ray: a grid, an Optuna search with ASHA and finalists, and
failing / diverging trials. One Ray instance serves the module (starting Ray costs ~5 s)."""
import json
import math
import os

import optuna
import pytest
import yaml

from harness.study import parse_study
from tests.conftest import tiny_config

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    """An embedded Ray whose workers use a fresh ganbench cache (no leftovers)."""
    import ray

    from harness.runner import ray_session

    cache = tmp_path_factory.mktemp("ray-cache")
    saved = os.environ.get("GANBENCH_CACHE")
    os.environ["GANBENCH_CACHE"] = str(cache)
    session = ray_session()
    session.__enter__()
    assert ray.is_initialized() and ray.cluster_resources()["CPU"] >= 2
    yield
    session.__exit__(None, None, None)
    if saved is None:
        os.environ.pop("GANBENCH_CACHE", None)
    else:
        os.environ["GANBENCH_CACHE"] = saved


def base(**overrides):
    cfg = tiny_config(**{"eval.metrics": ["swd"], "optimization.iterations": 30, "sample_every": 0,
                         "log_every": 10, "checkpoint_every": 10})
    for k, v in overrides.items():
        from harness.spec import set_dotted

        set_dotted(cfg, k, v)
    return cfg


def records(root):
    return {p.name: p for p in sorted((root / "trials").iterdir())}


def series(record_dir):
    return [json.loads(line) for line in (record_dir / "metrics.jsonl").read_text().splitlines()]


def test_embedded_ray_runs_trials_level_with_other_work(ray_local, monkeypatch):
    """Ray's default worker niceness (15) lets any ordinary process take ~97 % of a core
    from a trial; the embedded Ray runs its workers at 0 unless RAY_worker_niceness is set."""
    import ray

    from harness.runner import embedded_system_config

    @ray.remote
    def niceness():
        return os.nice(0)

    assert ray.get(niceness.remote()) == os.nice(0) == 0
    monkeypatch.setenv("RAY_worker_niceness", "10")
    assert embedded_system_config() == {}


def test_grid_of_four_trials_completes(ray_local, tmp_path):
    from harness.runner import run_study
    from harness.trial import run_trial

    study = parse_study({"name": "grid4", "base": base(), "grid": {"augment.policy": ["none", "diffaugment"]},
                         "seeds": [0, 1], "resources": {"cpus": 1, "max_concurrent": 2}})
    lines = []
    frame = run_study(study, tmp_path, out=lines.append)
    root = tmp_path / "grid4"
    assert sorted(frame["trial_id"]) == ["c000-s0", "c000-s1", "c001-s0", "c001-s1"]
    assert set(frame["status"]) == {"completed"} and set(frame["iterations"]) == {30}
    assert all(math.isfinite(v) and v > 0 for v in frame["best.swd"])
    assert set(frame["attempts"]) == {1}
    assert set(frame["config.augment.policy"]) == {"none", "diffaugment"}
    for trial_id, rec in records(root).items():
        rows = series(rec)
        assert [r["iteration"] for r in rows] == [10, 20, 30]
        assert json.loads((rec / "study_trial.json").read_text())["phase"] == "grid"
    assert (root / "summary.csv").exists() and (root / "tune" / "grid").is_dir()
    assert yaml.safe_load((root / "study.yaml").read_text())["name"] == "grid4"
    assert any("4/4 done (4 completed)" in line for line in lines)
    # Ray changes nothing about a trial's numbers: the same config in-process matches.
    plan = next(p for p in __import__("harness.study", fromlist=["plan"]).plan(study) if p.trial_id == "c001-s1")
    alone = run_trial(plan.spec, tmp_path / "alone")
    assert alone.last_report["metrics"]["swd"] == pytest.approx(series(root / "trials" / "c001-s1")[-1]["metrics"]["swd"],
                                                                rel=1e-6)


def test_search_with_asha_prunes_and_runs_finalists(ray_local, tmp_path):
    from harness.runner import run_study

    study = parse_study({
        "name": "search6", "base": base(**{"optimization.iterations": 80, "checkpoint_every": 20}),
        "search": {
            "metric": "swd", "n_trials": 6,
            "space": {"optimization.lr_g": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
                      "optimization.lr_d": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}},
            "sampler": {"name": "tpe", "seed": 3},
            "scheduler": {"name": "asha", "grace_period": 20, "reduction_factor": 2},
            "finalists": {"k": 1, "seeds": [11, 12], "baseline": True}},
        "resources": {"cpus": 1}})
    frame = run_study(study, tmp_path, out=lambda line: None)
    root = tmp_path / "search6"
    search = frame[frame["phase"] == "search"]
    assert len(search) == 6
    stopped = search[search["status"] == "stopped"]
    assert len(stopped) >= 1 and (stopped["iterations"] < 80).all()
    completed = search[search["status"] == "completed"]
    assert len(completed) >= 1 and (completed["iterations"] == 80).all()
    best = completed.sort_values("objective").iloc[0]
    finals = frame[frame["phase"] == "finalist"]
    assert sorted(finals["trial_id"]) == ["final-0-s11", "final-0-s12", "final-base-s11", "final-base-s12"]
    assert set(finals["status"]) == {"completed"} and set(finals["seed"]) == {11, 12}
    picked = finals[finals["trial_id"].str.startswith("final-0")]
    assert (picked["config.optimization.lr_g"] == best["config.optimization.lr_g"]).all()
    based = finals[finals["trial_id"].str.startswith("final-base")]
    assert (based["config.optimization.lr_g"] == study.base["optimization"].get("lr_g", 2e-4)).all()
    assert json.loads((root / "finalists.json").read_text())[0]["from"] == best["trial_id"]
    # The Optuna study is readable with Optuna's own API; stopped trials are PRUNED.
    ostudy = optuna.load_study(study_name="search6", storage=f"sqlite:///{root / 'optuna.db'}")
    states = [t.state for t in ostudy.trials]
    assert len(states) == 6
    assert states.count(optuna.trial.TrialState.PRUNED) == len(stopped)
    assert states.count(optuna.trial.TrialState.COMPLETE) == len(completed)
    assert ostudy.best_value == pytest.approx(best["objective"])
    # The report of the search: finalists pooled over their seeds, the search trials, and
    # Optuna's own history / importance figures read from optuna.db.
    from harness.analysis import comparison_table, load_study
    from harness.analysis.report import write_report

    table = comparison_table(load_study(root))
    data = table.data.set_index("cell")
    assert sorted(data.index)[-1] == "base (unsearched)" and list(data["n"]) == [2, 2]
    assert data.loc["base (unsearched)", "best.swd.mean"] == pytest.approx(based["best.swd"].mean())
    assert data.drop("base (unsearched)")["best.swd.mean"].iloc[0] == pytest.approx(picked["best.swd"].mean())
    page = write_report(root, png=False, notice=lambda line: None).read_text()
    assert 'id="fig-optuna_history"' in page and 'id="search-trials"' in page and "final-0-s11" in page


def test_failed_and_diverged_trials_are_recorded_and_the_study_goes_on(ray_local, tmp_path):
    from harness.runner import run_study

    study = parse_study({
        "name": "faults", "base": base(),
        "variants": [{"name": "ok", "set": {}},
                     {"name": "missing-data", "set": {"dataset.name": str(tmp_path / "nope.h5"),
                                                       "dataset.kwargs": {}}},
                     {"name": "explodes", "set": {"loss.name": "least_squares", "optimization.lr_d": 1e8,
                                                  "optimization.lr_g": 1e8}}],
        "failures": {"max_retries": 2}, "resources": {"cpus": 1}})
    frame = run_study(study, tmp_path, out=lambda line: None).set_index("variant")
    assert frame.loc["ok", "status"] == "completed"
    assert frame.loc["missing-data", "status"] == "failed"
    assert "nope.h5" in frame.loc["missing-data", "error"]
    assert frame.loc["explodes", "status"] == "diverged" and "non-finite" in frame.loc["explodes", "error"]
    # neither is retried: one attempt each
    assert frame.loc["missing-data", "attempts"] == 1 and frame.loc["explodes", "attempts"] == 1
    from harness.cli import main

    assert main(["summary", str(tmp_path / "faults"), "--format", "json"]) == 0
    # The report lists what failed and diverged, with the errors.
    from harness.analysis.report import write_report

    page = write_report(tmp_path / "faults", png=False, notice=lambda line: None).read_text()
    failures = page[page.index('id="failures"'):]
    assert "missing-data" in failures and "nope.h5" in failures and "non-finite" in failures


@pytest.mark.parametrize("resources, base_changes, message", [
    ({"cpus": 1, "gpus": 1}, {"device": "cuda"},
     r"resources.gpus: got 1.0; expected 0: this Ray cluster has no GPU \(1 alive node\(s\); the most of one node: "
     r"\d+ CPU\(s\), 0 GPU\(s\)\); run on a machine with one, or pass --address of a cluster that has GPUs"),
    ({"cpus": 64}, {}, r"resources.cpus: got 64.0; expected a number of CPUs one node with 0 GPU\(s\) has "
                       r"\(1 alive node\(s\); the most of one node: \d+ CPU\(s\), 0 GPU\(s\)\)"),
])
def test_a_trial_no_node_can_hold_is_refused_before_scheduling(ray_local, tmp_path, capsys, monkeypatch,
                                                               resources, base_changes, message):
    import re

    from harness.cli import main

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "toobig", "base": base(**base_changes), "seeds": [0],
                                     "resources": resources}))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(study)]) == 0        # a GPU study still validates on a machine without one
    assert main(["run", str(study), "--results", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err, err
    assert not (tmp_path / "res").exists()   # nothing was written (a corrected study then runs there)
