"""Hostile and careless inputs (issue 20): no input, file or second process may crash,
exhaust or silently corrupt a run. Each test names the case it keeps fixed; each failed
on the code before the fix (a second process wrote duplicate rows, a 450-byte YAML file
expanded to a 312 MB message, NaN was accepted, a resume ignored changed data, a bad
checkpoint restarted a trial from 0, a lying zoo card reached load_state_dict, an HDF5
file declaring gigabytes was read whole, a PermissionError was a traceback)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from harness import zoo
from harness.cli import main
from harness.errors import CheckpointError, ConfigError
from harness.spec import parse_trial
from harness.store import TrialRecord
from harness.trial import Trial, run_trial
from tests.conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]


def _yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganbench: error: ") and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ 1. one writer per trial
def _hold_lock_in_subprocess(lock_path: Path) -> subprocess.Popen:
    code = ("import sys, time; from harness import locks; "
            f"lock = locks.acquire({str(lock_path)!r}, 'out', 'a trial directory'); "
            "print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_trial_process_is_refused_naming_the_holder_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    cfg = _yaml(tmp_path / "t.yaml", tiny_config(**{"optimization.iterations": 10, "eval.every": 0}))
    out = tmp_path / "trial"
    holder = _hold_lock_in_subprocess(TrialRecord(out).lock_path)
    try:
        assert main(["trial", str(cfg), "--out", str(out), "--quiet"]) == 2
        err = _error_line(capsys)
        assert f"held by pid {holder.pid} on host {socket.gethostname()}" in err, err
        assert not TrialRecord(out).metrics_path.exists() and not TrialRecord(out).status_path.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing: its lock file still names it; the next run takes over
    assert json.loads(TrialRecord(out).lock_path.read_text())["pid"] == holder.pid
    with pytest.warns(RuntimeWarning, match=f"took over the lock left by pid {holder.pid}"):
        assert main(["trial", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert [r["iteration"] for r in TrialRecord(out).reports()] == [5, 10]


def test_two_real_trial_processes_on_one_folder_write_one_series(tmp_path):
    cfg = _yaml(tmp_path / "t.yaml", tiny_config(**{"optimization.iterations": 100000, "eval.every": 0,
                                                     "sample_every": 0}))
    out = tmp_path / "trial"
    cmd = [sys.executable, "-m", "harness.cli", "trial", str(cfg), "--out", str(out), "--quiet"]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = TrialRecord(out).lock_path
        deadline = time.time() + 60
        while time.time() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.05)
        second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert first.poll() is None  # still training while the second was refused
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
    iterations = [r["iteration"] for r in TrialRecord(out).reports()]
    assert iterations and iterations == sorted(set(iterations))  # one writer: no duplicated rows


# ------------------------------------------------------------------ 2. bounded YAML
def _bomb(levels: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\noptimization:\n  betas: *l{levels - 1}\n"


@pytest.mark.parametrize("levels", [9, 10])
def test_yaml_alias_bomb_is_refused_with_a_short_message(tmp_path, capsys, levels):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(levels))
    assert path.stat().st_size < 600
    tracemalloc.start()
    t0 = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    err = _error_line(capsys)
    assert "at most 100,000 values" in err and len(err) < 1000, err
    assert elapsed < 5 and peak < 50 << 20, (elapsed, peak)


def test_small_aliases_and_merges_stay_allowed(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("defaults: &d {iterations: 7, batch_size: 4}\noptimization:\n  <<: *d\n  batch_size: 8\n")
    from harness.spec import load_yaml

    assert load_yaml(str(path))["optimization"] == {"iterations": 7, "batch_size": 8}


def test_oversized_yaml_is_refused_before_parsing(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("name: big\ndescription: '" + "x" * (2 << 20) + "'\n")
    t0 = time.perf_counter()
    assert main(["validate", str(path)]) == 2
    assert time.perf_counter() - t0 < 5
    assert "at most 1,048,576 bytes" in _error_line(capsys)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\noptimization:\n  lr_g: 0.1\n  lr_g: 0.2\n")
    assert main(["validate", str(path)]) == 2
    err = _error_line(capsys)
    assert "'lr_g'" in err and "lines 3 and 4" in err, err


def test_non_utf8_yaml_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["validate", str(path)]) == 2
    assert "UTF-8" in _error_line(capsys)


def test_error_messages_abbreviate_long_values():
    err = ConfigError("optimization.betas", [list(range(1000))] * 1000, "a list of 2 numbers")
    assert len(str(err)) < 600 and "..." in str(err)


def test_planned_trials_are_capped_before_validation_and_the_flag_raises_the_cap(tmp_path, capsys):
    study = {"name": "big", "base": tiny_config(), "seeds": [0, 1, 2],
             "grid": {"optimization.lr_g": [1e-4, 2e-4], "optimization.lr_d": [1e-4, 2e-4]}}
    path = _yaml(tmp_path / "study.yaml", study)
    assert main(["validate", str(path), "--max-trials", "10"]) == 2
    err = _error_line(capsys)
    assert "12 planned trials" in err and "--max-trials N" in err, err
    assert main(["validate", str(path), "--max-trials", "12"]) == 0
    huge = {**study, "grid": {"optimization.lr_g": [1e-4 * (i + 1) for i in range(100)],
                              "optimization.lr_d": [1e-4 * (i + 1) for i in range(100)]}}
    t0 = time.perf_counter()
    assert main(["validate", str(_yaml(tmp_path / "huge.yaml", huge))]) == 2
    assert time.perf_counter() - t0 < 5  # refused by counting, not by validating 30,000 trials
    assert "30,000 planned trials" in _error_line(capsys)


# ------------------------------------------------------------------ 3. finite, sane numbers
@pytest.mark.parametrize("dotted, value, expected", [
    ("ema.decay", float("nan"), "finite"),
    ("optimization.lr_g", float("nan"), "finite"),
    ("optimization.lr_d", float("inf"), "finite"),
    ("optimization.lr_g", "nan", "finite"),
    ("optimization.time_budget_s", float("nan"), "finite"),
    ("eval.truncation", float("-inf"), "finite"),
    ("seed", 1e29, "2^63 - 1"),
    ("seed", 2 ** 63, "2^63 - 1"),
    ("optimization.batch_size", 1.0e12, "<= 65536"),
    ("optimization.iterations", 1.0e30, "2^63 - 1"),
    ("optimization.iterations", 10 ** 12, "<= 1000000000"),
    ("architecture.kwargs.width", 10 ** 7, "<= 8192"),
])
def test_non_finite_and_absurd_numbers_are_refused(dotted, value, expected):
    cfg = tiny_config(**{dotted: value})
    with pytest.raises(ConfigError, match=re.escape(expected)) as err:
        parse_trial(cfg)
    assert err.value.path == dotted


def test_nan_regularizer_weight_is_refused():
    with pytest.raises(ConfigError, match="finite") as err:
        parse_trial(tiny_config(regularizers=[{"name": "r1", "weight": float("nan")}]))
    assert err.value.path == "regularizers[0].weight"


def test_nan_from_a_yaml_file_and_set_is_exit_2(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(tiny_config()) + "")
    assert main(["validate", str(path), "--set", "ema.decay=.nan"]) == 2
    assert "ema.decay: got nan; expected a finite number" in _error_line(capsys)


def test_records_never_hold_nan_even_when_a_metric_returns_one(tmp_path):
    from harness.files import atomic_write_json
    from harness.training_state import TrainingState

    record = TrialRecord(tmp_path)
    record.append_report({"iteration": 5, "metrics": {"swd": float("nan"), "kid": np.float32("inf")}})
    atomic_write_json(tmp_path / "status.json", {"best": {"swd": float("nan")}})

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written"))

    assert strict(record.metrics_path.read_text())["metrics"] == {"swd": None, "kid": None}
    assert strict((tmp_path / "status.json").read_text()) == {"best": {"swd": None}}
    state = TrainingState()
    assert state.update_best({"swd": float("nan")}, {}) == {}
    assert state.update_best({"swd": 3.0}, {}) == {"swd": 3.0}


# ------------------------------------------------------------------ 4. dataset identity
def _image_folder(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def test_data_import_refuses_to_overwrite_without_force(tmp_path, capsys):
    a, b = _image_folder(tmp_path / "a", 6, 0), _image_folder(tmp_path / "b", 3, 1)
    assert main(["data", "import", str(a), "--name", "mine", "--resolution", "16"]) == 0
    capsys.readouterr()
    assert main(["data", "import", str(b), "--name", "mine", "--resolution", "16"]) == 2
    assert "--force replaces it" in _error_line(capsys)
    assert main(["data", "import", str(b), "--name", "mine", "--resolution", "32"]) == 2
    assert "imported from" in _error_line(capsys)
    assert main(["data", "import", str(b), "--name", "mine", "--resolution", "16", "--force"]) == 0


def test_resume_refuses_changed_data_unless_asked(tmp_path, capsys):
    from harness.data.catalog import import_folder

    import_folder(_image_folder(tmp_path / "a", 8, 0), "mine", 16)
    cfg = tiny_config(**{"dataset": {"name": "mine", "resolution": 16}, "optimization.iterations": 20,
                         "eval.every": 0, "sample_every": 0})
    out = tmp_path / "trial"
    trial = Trial(parse_trial(cfg), out)
    trial.start()
    trial.advance(10)  # checkpointed at 10, then "killed"
    trial.close()
    started = json.loads(TrialRecord(out).env_path.read_text())["dataset_fingerprint"]
    before = TrialRecord(out).metrics_path.read_bytes()
    _, changed, _ = import_folder(_image_folder(tmp_path / "b", 8, 1), "mine", 16, force=True)
    path = _yaml(tmp_path / "t.yaml", cfg)
    assert main(["trial", str(path), "--out", str(out), "--quiet"]) == 2
    err = _error_line(capsys)
    assert started[:16] in err and changed.fingerprint[:16] in err and "--allow-new-data" in err, err
    assert TrialRecord(out).metrics_path.read_bytes() == before  # nothing rewritten
    assert main(["trial", str(path), "--out", str(out), "--quiet", "--allow-new-data"]) == 0
    env = json.loads(TrialRecord(out).env_path.read_text())
    assert env["dataset_fingerprint"] == changed.fingerprint
    assert env["dataset_changes"][0]["iteration"] == 10 and env["dataset_changes"][0]["from"] == started


def test_a_study_resume_refuses_changed_data_before_scheduling(tmp_path):
    from harness.data.catalog import import_folder
    from harness.runner import StudyRunner
    from harness.study import parse_study

    import_folder(_image_folder(tmp_path / "a", 8, 0), "mine", 16)
    base = tiny_config(**{"dataset": {"name": "mine", "resolution": 16}, "optimization.iterations": 20,
                          "eval.every": 0, "sample_every": 0})
    study = parse_study({"name": "s", "base": base, "seeds": [0]})
    runner = StudyRunner(study, tmp_path / "results", out=lambda line: None)
    runner.prepare()
    plan = runner.plans[0]
    trial = Trial(plan.spec, runner.record.trial(plan.trial_id).root)
    trial.start()
    trial.advance(10)  # the driver died with this trial half-trained
    trial.close()
    import_folder(_image_folder(tmp_path / "b", 8, 1), "mine", 16, force=True)
    resumed = StudyRunner(study, tmp_path / "results", resume=True, out=lambda line: None)
    with pytest.raises(ConfigError, match="--allow-new-data") as err:
        resumed.prepare()
    assert err.value.path == f"trial {plan.trial_id}: dataset.name"
    StudyRunner(study, tmp_path / "results", resume=True, out=lambda line: None, allow_new_data=True).prepare()


# ------------------------------------------------------------------ 5. damaged checkpoints
def _paused_trial(out: Path, until: int = 20, **overrides):
    cfg = tiny_config(**{"optimization.iterations": 30, "eval.every": 0, "sample_every": 0,
                         "checkpoint_every": 10, "keep_checkpoints": 0, **overrides})
    trial = Trial(parse_trial(cfg), out)
    trial.start()
    trial.advance(until)
    trial.close()
    return cfg


def _evil_payload(path: Path) -> None:
    import hashlib
    import io

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(path.parent / "PWNED"),))

    buf = io.BytesIO()
    torch.save({"iteration": 20, "x": Evil()}, buf)
    data = buf.getvalue()
    path.write_bytes(data)
    manifest = path.with_suffix(".json")
    meta = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**meta, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def test_a_payload_checkpoint_falls_back_to_the_older_one_and_says_why(tmp_path):
    out = tmp_path / "trial"
    cfg = _paused_trial(out)
    newest = TrialRecord(out).checkpoints_dir / "ckpt-00000020.pt"
    _evil_payload(newest)
    with pytest.warns(RuntimeWarning, match="resuming from ckpt-00000010.pt .*ckpt-00000020.pt: refused by safe "
                                            "loading") as caught:
        result = run_trial(cfg, out)
    assert result.status == "completed" and result.iteration == 30
    assert not (newest.parent / "PWNED").exists()
    assert all("weights_only=False" not in str(w.message) for w in caught)
    assert [r["iteration"] for r in TrialRecord(out).reports()] == [5, 10, 15, 20, 25, 30]


def test_when_every_checkpoint_is_bad_the_trial_is_not_restarted_from_zero(tmp_path, capsys):
    out = tmp_path / "trial"
    cfg = _paused_trial(out)
    record = TrialRecord(out)
    for pt in record.checkpoints_dir.glob("ckpt-*.pt"):
        pt.write_bytes(pt.read_bytes()[:-7])
    before = record.metrics_path.read_bytes()
    with pytest.raises(CheckpointError, match="none of its 2 checkpoint"):
        run_trial(cfg, out)
    assert main(["trial", str(_yaml(tmp_path / "t.yaml", cfg)), "--out", str(out), "--quiet"]) == 2
    err = _error_line(capsys)
    assert "ckpt-00000010.pt: checksum mismatch" in err and "ckpt-00000020.pt: checksum mismatch" in err, err
    assert record.metrics_path.read_bytes() == before and record.status()["status"] == "running"


def test_stale_temp_files_of_killed_writes_are_removed_on_the_next_write(tmp_path):
    out = tmp_path / "trial"
    cfg = _paused_trial(out, until=10)
    ckpts = TrialRecord(out).checkpoints_dir
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = ckpts / f".ckpt-00000020.pt.{socket.gethostname()}~{dead}~abc123.tmp"
    legacy = ckpts / ".ckpt-00000020.pt.k2j3h4.tmp"  # from before temp names held host and pid
    alive = ckpts / f".ckpt-00000020.pt.{socket.gethostname()}~1~abc123.tmp"  # pid 1 lives
    for p in (stale, legacy, alive):
        p.write_bytes(b"\0" * 1000)
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    run_trial(cfg, out)
    assert not stale.exists() and not legacy.exists() and alive.exists()


# ------------------------------------------------------------------ 6. zoo cards
def _copy_entry(source_zoo: Path, zoo_root: Path, name: str) -> Path:
    entry = zoo_root / name
    shutil.copytree(source_zoo / "tiny-src", entry)
    return entry


def _edit_card(entry: Path, edit) -> None:
    card = json.loads((entry / zoo.CARD).read_text())
    edit(card)
    (entry / zoo.CARD).write_text(json.dumps(card))


def _finetune_cfg(source: str, **overrides):
    return tiny_config(**{"transfer": {"method": "finetune", "source": source}, **overrides})


def test_a_card_lying_about_its_width_fails_validation_naming_the_tensor(source_zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("GANBENCH_ZOO", str(tmp_path / "zoo"))
    entry = _copy_entry(source_zoo, tmp_path / "zoo", "liar")
    _edit_card(entry, lambda c: c["architecture"]["kwargs"].update(width=16))
    with pytest.raises(ConfigError, match=r"weights fit its card: G.safetensors holds .* of shape") as err:
        parse_trial(_finetune_cfg("liar", **{"architecture.kwargs": {"width": 16, "z_dim": 16}}))
    assert err.value.path == "transfer.source"


def test_a_card_naming_another_architecture_fails_validation(source_zoo, tmp_path, monkeypatch):
    from tests.conftest import TINY_ARCH_KWARGS

    monkeypatch.setenv("GANBENCH_ZOO", str(tmp_path / "zoo"))
    entry = _copy_entry(source_zoo, tmp_path / "zoo", "liar")
    resnet = json.loads(json.dumps(zoo._resolved_arch_kwargs("resnet", TINY_ARCH_KWARGS["resnet"], "k")))
    _edit_card(entry, lambda c: c.update(architecture={"name": "resnet", "kwargs": resnet}))
    with pytest.raises(ConfigError, match="weights fit its card"):
        parse_trial(_finetune_cfg("liar", **{"architecture": {"name": "resnet",
                                                              "kwargs": TINY_ARCH_KWARGS["resnet"]}}))


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.pop("files"), "card.json.files: got None; expected a value"),
    (lambda c: c.update(name="../../x"), "card.json.name: got '../../x'"),
    (lambda c: c.update(resolution="16"), "card.json.resolution"),
    (lambda c: c["files"].update({"G.safetensors": "not-a-hash"}), "a sha256"),
])
def test_malformed_cards_are_refused_by_the_schema(source_zoo, tmp_path, monkeypatch, edit, expected):
    monkeypatch.setenv("GANBENCH_ZOO", str(tmp_path / "zoo"))
    entry = _copy_entry(source_zoo, tmp_path / "zoo", "bad")
    _edit_card(entry, edit)
    with pytest.raises(ConfigError, match="valid card.json") as err:
        parse_trial(_finetune_cfg("bad"))
    assert expected in str(err.value)


def test_one_malformed_card_does_not_break_zoo_list(source_zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANBENCH_ZOO", str(tmp_path / "zoo"))
    _copy_entry(source_zoo, tmp_path / "zoo", "good")
    _edit_card(_copy_entry(source_zoo, tmp_path / "zoo", "broken"), lambda c: c.pop("files"))
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "dcgan" in out and "broken" in out and "unusable" in out


# ------------------------------------------------------------------ 7. HDF5 files and images
def _h5(path: Path, make) -> str:
    with h5py.File(path, "w") as fh:
        make(fh)
    return str(path)


@pytest.mark.parametrize("make, expected", [
    (lambda fh: fh.create_dataset("imgs", data=np.zeros((0, 3, 16, 16), np.uint8)), "holds no images"),
    (lambda fh: fh.create_group("imgs"), "got a group"),
    (lambda fh: fh.create_dataset("imgs", data=np.zeros((4, 3, 16, 24), np.uint8)), "16 x 24, not square"),
    (lambda fh: fh.create_dataset("imgs", data=np.zeros((4, 3, 16, 16), np.float32)), "got a float32"),
    (lambda fh: fh.create_dataset("other", data=np.zeros((4, 3, 16, 16), np.uint8)), "has no 'imgs'"),
])
def test_bad_hdf5_files_are_refused_from_their_metadata(tmp_path, make, expected):
    path = _h5(tmp_path / "bad.hdf5", make)
    with pytest.raises(ConfigError, match=expected) as err:
        run_trial(tiny_config(**{"dataset": {"name": path, "resolution": 16}}), tmp_path / "t")
    assert err.value.path == "dataset.name"
    assert not (tmp_path / "t" / "metrics.jsonl").exists()


def test_an_hdf5_file_declaring_gigabytes_it_does_not_store_is_not_read(tmp_path):
    path = _h5(tmp_path / "liar.hdf5",
               lambda fh: fh.create_dataset("imgs", shape=(16000, 3, 256, 256), dtype=np.uint8, chunks=True))
    assert os.path.getsize(path) < 64 << 10
    from harness.data.hdf5 import read_hdf5

    tracemalloc.start()
    with pytest.raises(ConfigError, match="declared, .* bytes stored"):
        read_hdf5(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 << 20, peak


@pytest.mark.parametrize("resolution, expected", [("17", "some architecture can train at"),
                                                  ("40000", "<= 1024")])
def test_data_import_refuses_resolutions_no_trial_can_use(tmp_path, capsys, resolution, expected):
    folder = _image_folder(tmp_path / "a", 2, 0)
    assert main(["data", "import", str(folder), "--name", "odd", "--resolution", resolution]) == 2
    assert expected in _error_line(capsys)


# ------------------------------------------------------------------ 8. exit codes
def test_a_file_problem_anywhere_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import harness.trial

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "results" / "status.json"))

    monkeypatch.setattr(harness.trial, "run_trial", denied)
    cfg = _yaml(tmp_path / "t.yaml", tiny_config())
    assert main(["trial", str(cfg), "--out", str(tmp_path / "results"), "--quiet"]) == 2
    err = _error_line(capsys)
    assert "status.json: Permission denied" in err and "\n" not in err


def test_an_out_folder_that_cannot_be_created_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = _yaml(tmp_path / "t.yaml", tiny_config())
    assert main(["trial", str(cfg), "--out", str(blocker / "trial"), "--quiet"]) == 2
    assert "a folder this process may write" in _error_line(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_results_folder_is_exit_2(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        cfg = _yaml(tmp_path / "t.yaml", tiny_config())
        assert main(["trial", str(cfg), "--out", str(ro / "trial"), "--quiet"]) == 2
        assert "Permission denied" in _error_line(capsys)
    finally:
        ro.chmod(0o755)


def test_lock_refusal_is_a_config_error_with_the_field():
    from harness import locks

    assert issubclass(locks.LockedError, ConfigError)
