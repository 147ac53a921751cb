"""Multi-worker trials in a Ray Tune study (Ray Train's TorchTrainer, 2 gloo workers of
1 CPU each on an embedded 2-CPU Ray): a study completes, a killed worker's trial resumes
from its checkpoint, and a trial the cluster can never place is refused before anything
is scheduled. The gradient-level equalities live in tests/test_distributed.py."""
import json
import threading
import time

import pytest
import yaml

from harness.study import parse_study
from tests.test_study_ray import base, ray_local, records, series  # noqa: F401 - the module's Ray

pytestmark = pytest.mark.timeout(400)

NO_BN = {"architecture.kwargs": {"width": 8, "z_dim": 16, "norm": "none"}}


def two_worker_study(name, iterations, **extra):
    cfg = base(**NO_BN, **{"optimization.iterations": iterations, "eval.every": 20,
                           "checkpoint_every": 20, "log_every": 10})
    data = {"name": name, "base": cfg, "seeds": [0], "resources": {"workers": 2, "cpus": 1},
            "failures": {"max_retries": 2}}
    data.update(extra)
    return parse_study(data)


def status(record):
    try:
        return json.loads((record / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def attempts(record):
    return [json.loads(line) for line in (record / "attempts.jsonl").read_text().splitlines()]


def _rank_one_worker(rank0_pid):
    """The trial's other Ray Train worker process (not rank 0, whose pid the status holds)."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "RayTrainWorker" in cmdline and proc.info["pid"] != rank0_pid:
            return proc
    return None


def test_a_two_worker_study_completes_and_a_killed_worker_resumes_from_its_checkpoint(ray_local, tmp_path):
    """One test for both (each multi-worker trial pays ~15 s of Ray Train start-up)."""
    from harness.runner import run_study

    study = two_worker_study("workerkill", 100)
    root = tmp_path / "workerkill"
    killed = {}

    def kill_rank_one():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            for record in sorted((root / "trials").glob("*")) if (root / "trials").exists() else []:
                st = status(record)
                saved = [int(p.stem.split("-")[1]) for p in (record / "checkpoints").glob("ckpt-*.json")]
                if st.get("status") == "running" and saved and 40 <= max(saved) < 80:
                    victim = _rank_one_worker(st.get("pid"))
                    if victim is not None:
                        killed.update(checkpoint=max(saved), pid=victim.pid)
                        victim.kill()
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_rank_one, daemon=True)
    killer.start()
    frame = run_study(study, tmp_path, out=lambda line: None)
    killer.join(timeout=5)
    assert killed, "no worker was caught mid-run"
    assert list(frame["status"]) == ["completed"]
    (record,) = records(root).values()
    tries = attempts(record)
    assert len(tries) >= 2 and tries[-1]["resumed_from"] >= killed["checkpoint"]  # from a checkpoint, not from 0
    rows = series(record)
    assert [row["iteration"] for row in rows] == list(range(10, 101, 10))  # rank 0 alone writes: each once, in order
    cfg = yaml.safe_load((record / "config.yaml").read_text())
    assert cfg["optimization"]["workers"] == 2
    batch = cfg["optimization"]["batch_size"]
    assert rows[-1]["samples_seen"] == 100 * 2 * batch  # batch x workers per iteration, the resumed part too
    assert rows[-1]["performance"]["workers"] == 2 and rows[-1]["effective_batch"] == 2 * batch


def test_more_workers_than_the_cluster_can_place_is_refused_before_scheduling(ray_local, tmp_path, capsys,
                                                                             monkeypatch):
    from harness.cli import main

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "toomany", "base": base(**NO_BN), "seeds": [0],
                                     "resources": {"workers": 16, "cpus": 1}}))
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(study)]) == 0
    assert main(["run", str(study), "--results", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert "resources.workers: got 16; expected at most" in err and "Traceback" not in err, err
    assert not (tmp_path / "res").exists()


def test_the_device_checks_ray_train_trial_runs_on_ray_train(ray_local, tmp_path):
    """gpucheck's one-worker Ray Train trial (one GPU there; a CPU worker here): it goes
    through TorchTrainer (whose run folder it leaves) and completes with rank 0's record."""
    from harness import gpucheck

    got = gpucheck.measure_ray_train("cpu", True, 20, tmp_path)
    assert got["statuses"] == ["completed"] and got["iteration"] == 20, got
    assert got["performance"]["precision"] == "fp32" and "workers" not in got["performance"] and got["rows"] >= 1
    assert list(tmp_path.glob("gpucheck_ray_train/tune/**/*-workers")), "not run on Ray Train"
