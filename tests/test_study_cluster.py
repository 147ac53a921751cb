"""Failures a study must survive: a worker node dying mid-trial (head + 2 worker nodes on
this machine with ray.cluster_utils.Cluster) and the driver being killed (then --resume).

Every test shuts down only the Ray processes it started (never ``ray stop``)."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from harness.study import parse_study
from tests.conftest import tiny_config

pytestmark = pytest.mark.timeout(420)


def study_data(name, iterations, seeds, **extra):
    cfg = tiny_config(**{"eval.metrics": ["swd"], "eval.every": 100, "optimization.iterations": iterations,
                         "sample_every": 0, "log_every": 20, "checkpoint_every": 50})
    data = {"name": name, "base": cfg, "seeds": seeds, "resources": {"cpus": 1}, "failures": {"max_retries": 3}}
    data.update(extra)
    return data


def series(record_dir):
    return [json.loads(line)["iteration"] for line in (record_dir / "metrics.jsonl").read_text().splitlines()]


def attempts(record_dir):
    return [json.loads(line) for line in (record_dir / "attempts.jsonl").read_text().splitlines()]


def status(record_dir):
    try:
        return json.loads((record_dir / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def checkpoint_at_least(record_dir, iteration):
    return any(int(p.stem.split("-")[1]) >= iteration for p in (record_dir / "checkpoints").glob("ckpt-*.json")) \
        if (record_dir / "checkpoints").exists() else False


@pytest.fixture
def fresh_cache_env(tmp_path):
    saved = os.environ.get("GANBENCH_CACHE")
    os.environ["GANBENCH_CACHE"] = str(tmp_path / "cache")  # inherited by Ray's processes
    yield
    if saved is None:
        os.environ.pop("GANBENCH_CACHE", None)
    else:
        os.environ["GANBENCH_CACHE"] = saved


def test_worker_node_dies_mid_trial_and_the_study_completes(tmp_path, fresh_cache_env):
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    from harness.runner import run_study

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    study = parse_study(study_data("nodes", 600, [0, 1]))
    root = tmp_path / "nodes"
    killed = {}

    def kill_a_busy_node():
        deadline = time.time() + 180
        while time.time() < deadline and not killed:
            for rec in sorted((root / "trials").glob("*")) if (root / "trials").exists() else []:
                st = status(rec)
                if st.get("status") == "running" and checkpoint_at_least(rec, 100) and "pid" in st:
                    try:
                        parents = {p.pid for p in psutil.Process(st["pid"]).parents()}
                    except psutil.NoSuchProcess:
                        continue
                    for node in workers:
                        raylet = node.all_processes["raylet"][0].process.pid
                        if raylet in parents:
                            killed.update(trial=rec.name, iteration=st["iteration"])
                            cluster.remove_node(node, allow_graceful=False)
                            return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_node, daemon=True)
    try:
        killer.start()
        frame = run_study(study, tmp_path, out=lambda line: None)
        killer.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed, "no trial was caught mid-run on a worker node"
    assert set(frame["status"]) == {"completed"}
    victim = root / "trials" / killed["trial"]
    tries = attempts(victim)
    assert len(tries) >= 2 and tries[-1]["resumed_from"] >= 50  # resumed from a checkpoint, not from 0
    for rec in (root / "trials").iterdir():
        # continuous: every logged iteration exactly once, in order, to the end
        assert series(rec) == list(range(20, 601, 20)), rec.name


def _processes_with_env(key, value):
    import psutil

    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(key) == value:
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def kill_driver_and_its_ray(driver, env):
    """SIGKILL the driver (started in its own session), the Ray it started, and every
    process that inherited this test's cache: a Ray worker the tree walk missed
    (re-parented, or started in its own session) must not finish its trial later."""
    import psutil

    family = [driver.pid] + [p.pid for p in psutil.Process(driver.pid).children(recursive=True)]
    os.killpg(driver.pid, signal.SIGKILL)
    family += [p.pid for p in _processes_with_env("GANBENCH_CACHE", env["GANBENCH_CACHE"])]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    driver.wait(timeout=30)
    psutil.wait_procs([p for p in map(_proc, family) if p is not None], timeout=30)


def kill_driver_mid_study(study_file, results, root, log_path):
    """Start ``ganbench run`` in its own session; SIGKILL it and the Ray it started as soon
    as one trial has completed while another is running past a checkpoint. Returns the
    metrics.jsonl bytes of the trials that had completed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(log_path, "w")
    driver = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(study_file), "--results",
                               str(results)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                              cwd=str(Path(__file__).resolve().parents[1]))
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            recs = sorted((root / "trials").glob("*")) if (root / "trials").exists() else []
            done = [r for r in recs if status(r).get("status") == "completed"]
            mid = [r for r in recs if status(r).get("status") == "running" and checkpoint_at_least(r, 100)]
            if done and mid:
                break
            assert driver.poll() is None, Path(log_path).read_text()
            time.sleep(0.05)
        else:
            pytest.fail("the study never had a finished and a running trial at once")
        kill_driver_and_its_ray(driver, env)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        log.close()
    return {rec.name: (rec / "metrics.jsonl").read_bytes() for rec in (root / "trials").iterdir()
            if status(rec).get("status") == "completed"}


def test_driver_killed_then_resume_reruns_no_finished_trial(tmp_path, fresh_cache_env):
    from harness.cli import main

    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(study_data("drv", 400, [0, 1, 2, 3],
                                                    resources={"cpus": 1, "max_concurrent": 2})))
    results = tmp_path / "results"
    root = results / "drv"
    finished_before = kill_driver_mid_study(study_file, results, root, tmp_path / "driver.log")
    interrupted = [r.name for r in (root / "trials").iterdir() if r.name not in finished_before]
    assert finished_before and interrupted

    assert main(["run", str(study_file), "--results", str(results)]) == 2  # refuses without --resume
    assert main(["run", str(study_file), "--results", str(results), "--resume"]) == 0
    summary = json.loads((root / "summary.json").read_text())
    assert len(summary) == 4 and {row["status"] for row in summary} == {"completed"}
    for name, before in finished_before.items():
        rec = root / "trials" / name
        assert (rec / "metrics.jsonl").read_bytes() == before  # not rerun
        assert all(a.get("finished") == "completed" for a in attempts(rec)[1:])  # at most looked at
    for name in interrupted:
        rec = root / "trials" / name
        assert series(rec) == list(range(20, 401, 20)), name
    resumed = [a for name in interrupted for a in attempts(root / "trials" / name)[1:]]
    assert any(a.get("resumed_from", 0) >= 100 for a in resumed)


def test_search_driver_killed_then_resume_completes_the_search(tmp_path, fresh_cache_env):
    import optuna

    from harness.cli import main

    data = study_data("srch", 300, [0], resources={"cpus": 1, "max_concurrent": 2})
    data["search"] = {"metric": "swd", "n_trials": 4, "scheduler": {"name": "none"},
                      "space": {"optimization.lr_g": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}}
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(data))
    results = tmp_path / "results"
    root = results / "srch"
    finished_before = kill_driver_mid_study(study_file, results, root, tmp_path / "driver.log")
    assert finished_before
    # as if the driver had died right after Optuna's ask, before Tune recorded the trial
    storage = f"sqlite:///{root / 'optuna.db'}"
    orphan = optuna.load_study(study_name="srch", storage=storage).ask().number
    assert main(["run", str(study_file), "--results", str(results), "--resume"]) == 0
    rows = [r for r in json.loads((root / "summary.json").read_text()) if r["phase"] == "search"]
    # trials Tune had started but not yet recorded when the driver died are ended, not
    # left running (it depends on the kill's timing whether there are any)
    abandoned = [r for r in rows if r["status"] == "stopped"]
    assert all(r["error"].startswith("abandoned: the driver was killed") for r in abandoned)
    summary = [r for r in rows if r["status"] != "stopped"]
    assert len(summary) == 4 and {row["status"] for row in summary} == {"completed"}
    for name, before in finished_before.items():
        assert (root / "trials" / name / "metrics.jsonl").read_bytes() == before
    for row in summary:
        assert series(root / "trials" / row["trial_id"]) == list(range(20, 301, 20))
    ostudy = optuna.load_study(study_name="srch", storage=storage)
    assert ostudy.trials[orphan].state == optuna.trial.TrialState.FAIL
    assert not [t for t in ostudy.trials if t.state == optuna.trial.TrialState.RUNNING]
    complete = [t for t in ostudy.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(round(t.value, 6) for t in complete) == sorted(round(r["objective"], 6) for r in summary)


def _proc(pid):
    import psutil

    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
