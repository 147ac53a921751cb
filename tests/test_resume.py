"""Kill a trial with SIGKILL mid-run, rerun on the same directory, compare with an
uninterrupted run: same series, no duplicated or missing iterations, equal losses."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from harness import checkpoint as ckpt
from harness.errors import CheckpointError
from harness.store import TrialRecord, read_jsonl
from harness.trial import run_trial
from tests.conftest import tiny_config

RESUME_CFG = tiny_config(**{
    "dataset.resolution": 32, "architecture.kwargs": {"width": 16, "z_dim": 32},
    "optimization.iterations": 240, "checkpoint_every": 30, "log_every": 10, "eval.every": 60,
    "eval.metrics": ["swd"], "eval.n_samples": 32, "sample_every": 60, "ema.decay": 0.99,
})


def _latest_checkpoint(directory):
    names = sorted(p.name for p in directory.glob("ckpt-*.json")) if directory.exists() else []
    return int(names[-1][5:13]) if names else 0


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    cfg_file = tmp_path / "trial.yaml"
    cfg_file.write_text(yaml.safe_dump(RESUME_CFG))
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "trial", str(cfg_file), "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while _latest_checkpoint(out / "checkpoints") < 90:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline, "trial too slow to reach a checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    record = TrialRecord(out)
    assert record.status()["status"] == "running"  # killed: nobody marked it finished
    killed_at = _latest_checkpoint(out / "checkpoints")
    assert 90 <= killed_at < 240

    resumed = run_trial(RESUME_CFG, out)
    reference = run_trial(RESUME_CFG, tmp_path / "reference")
    assert resumed.status == reference.status == "completed"

    rows = record.reports()
    ref_rows = TrialRecord(tmp_path / "reference").reports()
    assert [r["iteration"] for r in rows] == list(range(10, 241, 10))
    assert [r["iteration"] for r in rows] == [r["iteration"] for r in ref_rows]
    for row, ref in zip(rows, ref_rows):
        assert row["losses"] == ref["losses"], row["iteration"]
        assert row["samples_seen"] == ref["samples_seen"]
        assert row.get("metrics") == ref.get("metrics")
    # time keeps counting across the resume
    walls = [r["wall_s"] for r in rows]
    assert walls == sorted(walls)


def test_resume_from_an_older_checkpoint_with_a_torn_series(tmp_path):
    """A crash after iteration 37 leaves the checkpoint at 30, rows up to 35 and a torn
    line; the rerun drops rows after 30 and recomputes 35 and 40 exactly."""
    import shutil

    cfg = tiny_config(**{"optimization.iterations": 40, "checkpoint_every": 10, "log_every": 5})
    assert run_trial(cfg, tmp_path / "full").status == "completed"
    full_rows = TrialRecord(tmp_path / "full").reports()
    shutil.copytree(tmp_path / "full", tmp_path / "crashed")
    crashed = TrialRecord(tmp_path / "crashed")
    for suffix in (".json", ".pt"):  # keep=2 left checkpoints 30 and 40; drop 40
        (crashed.checkpoints_dir / f"ckpt-00000040{suffix}").unlink()
    crashed.set_status("running", iteration=37)
    text = "".join(json.dumps(r) + "\n" for r in full_rows if r["iteration"] <= 35)
    crashed.metrics_path.write_text(text + '{"iteration": 40, "loss')  # torn by the kill
    assert [r["iteration"] for r in crashed.reports()] == list(range(5, 36, 5))
    result = run_trial(cfg, tmp_path / "crashed")
    assert result.status == "completed" and result.iteration == 40
    rows = crashed.reports()
    assert [r["iteration"] for r in rows] == list(range(5, 41, 5))
    assert [r["losses"] for r in rows] == [r["losses"] for r in full_rows]


def test_corrupt_newest_checkpoint_falls_back(tmp_path):
    for it in (10, 20):
        ckpt.save(tmp_path, it, {"iteration": it, "w": torch.full((3,), float(it))})
    newest = tmp_path / "ckpt-00000020.pt"
    newest.write_bytes(newest.read_bytes()[:-10])  # truncated
    with pytest.raises(CheckpointError, match="checksum"):
        ckpt.load_file(newest, tmp_path / "ckpt-00000020.json")
    with pytest.warns(RuntimeWarning, match="resuming from ckpt-00000010.pt .*ckpt-00000020.pt: checksum"):
        state = ckpt.load_latest(tmp_path)
    assert state["iteration"] == 10 and torch.equal(state["w"], torch.full((3,), 10.0))


def test_keep_checkpoints_keeps_every_one_or_the_newest(tmp_path):
    cfg = tiny_config(**{"optimization.iterations": 20, "checkpoint_every": 5, "log_every": 5,
                         "keep_checkpoints": 0})
    run_trial(cfg, tmp_path / "all")
    assert sorted(p.name for p in (tmp_path / "all" / "checkpoints").glob("ckpt-*.pt")) == [
        f"ckpt-{i:08d}.pt" for i in (5, 10, 15, 20)]
    state = ckpt.load_file(tmp_path / "all" / "checkpoints" / "ckpt-00000010.pt",
                           tmp_path / "all" / "checkpoints" / "ckpt-00000010.json")
    assert state["iteration"] == 10  # an old one loads as a full training state
    run_trial({**cfg, "keep_checkpoints": 1}, tmp_path / "one")
    assert [p.name for p in (tmp_path / "one" / "checkpoints").glob("ckpt-*.pt")] == ["ckpt-00000020.pt"]


def test_payload_without_manifest_is_ignored(tmp_path):
    ckpt.save(tmp_path, 10, {"iteration": 10})
    # a kill between writing the payload and its manifest leaves an orphan payload
    (tmp_path / "ckpt-00000020.pt").write_bytes(b"partial")
    assert ckpt.load_latest(tmp_path)["iteration"] == 10


def test_checkpoints_refuse_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    import hashlib
    import io

    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)
    data = buf.getvalue()
    (tmp_path / "ckpt-00000010.pt").write_bytes(data)
    (tmp_path / "ckpt-00000010.json").write_text(json.dumps(
        {"iteration": 10, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))
    with pytest.raises(CheckpointError, match="refused by safe loading .*it would import posix.system") as err:
        ckpt.load_file(tmp_path / "ckpt-00000010.pt", tmp_path / "ckpt-00000010.json")
    assert "weights_only=False" not in str(err.value) and "will likely succeed" not in str(err.value)


def test_prune_keeps_the_newest(tmp_path):
    for it in (10, 20, 30, 40):
        ckpt.save(tmp_path, it, {"iteration": it}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["ckpt-00000030.json", "ckpt-00000040.json"]


def test_read_jsonl_skips_torn_and_corrupt_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"iteration": 1}\nnot json\n{"iteration": 2}\n{"iteration": 3')
    assert read_jsonl(p) == [{"iteration": 1}, {"iteration": 2}]
