"""Experiment trackers: what a trial sends equals its own records, a resumed trial
continues its runs without duplicated steps, and a tracker that fails, hangs or is not
installed never fails or holds up the trial."""
import json
import threading
import warnings

import numpy as np
import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.spec import parse_trial
from harness.store import TrialRecord
from harness.tracking import Tracker
from harness.trial import Trial, run_trial
from tests import tracking_readers as read
from tests.conftest import tiny_config

pytestmark = pytest.mark.timeout(240)


def _config(tmp_path, **tracking):
    return tiny_config(**{"eval.metrics": ["swd"], "tracking": tracking})


def _close(a, b):
    """Two (step, value) series equal up to TensorBoard's float32."""
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-6)


def test_a_resumed_trial_continues_every_tracker_and_each_series_equals_metrics_jsonl(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(tmp_path, mlflow={"uri": uri}, wandb={"mode": "offline"})
    cfg.update(augment={"policy": "ada"}, regularizers=[{"name": "lecam", "weight": 0.1}])
    spec = parse_trial(cfg)
    out = tmp_path / "trial"
    # first start: trains to 15 (checkpoint at 10), its trackers flush, the process "ends"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = Trial(spec, out)
        assert first.start() is None
        first.advance(15)
        first.close()
        record = TrialRecord(out)
        kept = json.loads(record.tracking_path.read_text())
        assert kept["mlflow"]["last_step"] == kept["wandb"]["last_step"] == 15
        # second start: resumes from 10, so 15 is trained (and reported) again, then 20
        result = run_trial(spec, out)
    assert result.status == "completed"
    assert not _tracking_warnings(caught)  # no tracker complained (they warn from their thread)
    rows = record.reports()
    assert [r["iteration"] for r in rows] == [5, 10, 15, 20]
    after = json.loads(record.tracking_path.read_text())
    assert after["mlflow"]["run_id"] == kept["mlflow"]["run_id"] and after["wandb"]["run_id"] == kept["wandb"]["run_id"]

    # TensorBoard: two event files, the second purging what the first wrote after step 10
    tb = read.tensorboard(out / "tensorboard")
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert read.rows_series(rows, "augment", "ada_p") and read.rows_series(rows, "regularizers", "lecam_real")
    for group, key in (("losses", "d_loss"), ("losses", "g_loss"), ("metrics", "swd"), ("best", "swd"),
                       ("augment", "ada_p"), ("regularizers", "lecam_real")):
        series = read.tb_series(tb, f"{group}/{key}")
        steps = [s for s, _ in series]
        assert steps == sorted(set(steps)), f"{group}/{key}: steps not strictly increasing: {steps}"
        _close(series, read.rows_series(rows, group, key))
    grids = tb.Images("samples")
    assert [g.step for g in grids] == [10, 20]
    from PIL import Image
    import io

    shown = np.asarray(Image.open(io.BytesIO(grids[-1].encoded_image_string)).convert("RGB"))
    np.testing.assert_array_equal(shown, np.asarray(Image.open(record.sample_path(20)).convert("RGB")))
    hp = read.tb_hparams(tb)
    assert hp["optimization.batch_size"] == 8 and hp["architecture.name"] == "dcgan" and hp["status"] == "completed"
    assert read.tb_series(tb, "hparams/final/swd") == [(20, pytest.approx(rows[-1]["metrics"]["swd"], rel=1e-6))]

    # MLflow: one run, each step once, the same values
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(after["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["optimization.batch_size"] == "8"
    assert json.loads(run.data.tags["protocol/swd"]) == rows[-1]["protocol"]["swd"]
    for group, key in (("losses", "d_loss"), ("metrics", "swd"), ("augment", "ada_p"), ("regularizers", "lecam_fake")):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, f"{group}/{key}"))
        _close(history, read.rows_series(rows, group, key))
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "samples")) == [
        "samples/samples-00000010.png", "samples/samples-00000020.png"]

    # W&B: two offline run folders of one run id; together each step once
    runs = read.wandb_runs(out)
    assert len(runs) == 2 and {r["id"] for r in runs} == {after["wandb"]["run_id"]}
    for group, key in (("losses", "d_loss"), ("metrics", "swd"), ("augment", "ada_p"), ("regularizers", "lecam_real")):
        _close(read.wandb_series(runs, f"{group}/{key}"), read.rows_series(rows, group, key))
    assert [row["_step"] for run in runs for row in run["history"] if "samples/path" in row] == [10, 20]


class _Broken(Tracker):
    """A stand-in W&B whose logging raises."""

    package, install = "json", "nothing"

    def start(self):
        return {"run_id": "x"}

    def log(self, step, values):
        raise RuntimeError("the tracker's server said 401: bad credentials")

    def image(self, step, tag, path):
        pass

    def finish(self, step, status, hparams, results):
        pass


def _wandb_as(monkeypatch, cls):
    from harness.tracking import base

    entry = base.TRACKERS["wandb"]
    monkeypatch.setitem(base.TRACKERS, "wandb", base.Entry("wandb", cls, entry.options))
    cls.name = "wandb"


def _tracking_warnings(caught):
    return [str(w.message) for w in caught if "tracking" in str(w.message)]


def test_a_tracker_that_raises_costs_one_warning_and_the_trial_and_other_trackers_go_on(tmp_path, monkeypatch):
    _wandb_as(monkeypatch, _Broken)
    out = tmp_path / "trial"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_trial(_config(tmp_path, wandb={"mode": "offline"}), out)
    assert result.status == "completed"
    said = _tracking_warnings(caught)
    assert len(said) == 1 and "tracking.wandb: log failed (RuntimeError: the tracker's server said 401" in said[0]
    rows = TrialRecord(out).reports()
    _close(read.tb_series(read.tensorboard(out / "tensorboard"), "losses/d_loss"), read.rows_series(rows, "losses", "d_loss"))


def test_an_unreachable_mlflow_server_costs_one_warning_and_no_wait(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_trial(_config(tmp_path, mlflow={"uri": f"http://127.0.0.1:{port}"}), tmp_path / "trial")
    assert result.status == "completed"
    said = _tracking_warnings(caught)
    assert len(said) == 1 and said[0].split(": ", 1)[1].startswith(
        f"tracking.mlflow: start failed (ConnectionError: http://127.0.0.1:{port} does not answer"), said


def test_a_hanging_tracker_does_not_hold_up_the_trial(tmp_path, monkeypatch):
    released = threading.Event()

    class Hanging(_Broken):
        def log(self, step, values):
            released.wait(30)  # the trial must not wait for this (an unbounded join would)

    _wandb_as(monkeypatch, Hanging)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_trial(_config(tmp_path, wandb={"mode": "offline"}, close_timeout_s=0.5), tmp_path / "trial")
    hung = not released.is_set()
    released.set()
    assert result.status == "completed" and hung
    said = _tracking_warnings(caught)
    assert len(said) == 1 and "tracking: wandb still sending after 0.5 s" in said[0]
    # TensorBoard has its own thread: the hanging tracker held it up no more than the trial
    rows = TrialRecord(tmp_path / "trial").reports()
    _close(read.tb_series(read.tensorboard(tmp_path / "trial" / "tensorboard"), "losses/d_loss"),
           read.rows_series(rows, "losses", "d_loss"))


def test_a_missing_package_is_one_line_naming_what_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_trial(_config(tmp_path, wandb={"mode": "offline"}), tmp_path / "trial")
    assert result.status == "completed"
    said = _tracking_warnings(caught)
    assert len(said) == 1 and "tracking.wandb: the wandb package is not installed (pip install wandb" in said[0]
    assert not (tmp_path / "trial" / "wandb").exists()
    import yaml

    config = tmp_path / "trial.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, wandb={"mode": "offline"})))
    assert main(["validate", str(config)]) == 0  # valid: it only says what to install
    assert "ganbench: note: tracking.wandb: the wandb package is not installed (pip install wandb" in \
        capsys.readouterr().err


@pytest.mark.parametrize("tracking, path, expected", [
    ({"neptune": {}}, "tracking.neptune", "allowed keys: tensorboard, mlflow, wandb"),
    ({"mlflow": {"uri": "htp:/127.0.0.1:5000"}}, "tracking.mlflow.uri", "a tracking URI"),
    ({"mlflow": {"uri": "http://:5000"}}, "tracking.mlflow.uri", "names no host"),
    ({"mlflow": {"uri": "http://127.0.0.1:99999"}}, "tracking.mlflow.uri", "port"),
    ({"mlflow": {"uri": "ftp://host/x"}}, "tracking.mlflow.uri", "a tracking URI"),
    ({"mlflow": {}}, "tracking.mlflow.uri", "required"),
    ({"wandb": {"mode": "online-ish"}}, "tracking.wandb.mode", "one of online, offline, disabled"),
    ({"wandb": {"project": "a/b"}}, "tracking.wandb.project", "none of /"),
])
def test_bad_tracking_input_is_refused_naming_the_field(tracking, path, expected):
    with pytest.raises(ConfigError) as err:
        parse_trial(tiny_config(tracking=tracking))
    assert err.value.path == path and expected in str(err.value)


def test_relative_tracking_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlflow = parse_trial(tiny_config(tracking={"mlflow": {"uri": "sqlite:///runs/m.db"}})).tracking.mlflow
    assert mlflow.uri == f"sqlite:///{tmp_path.resolve()}/runs/m.db"
    assert parse_trial(tiny_config(tracking={"mlflow": {"uri": "mlruns"}})).tracking.mlflow.uri == \
        (tmp_path.resolve() / "mlruns").as_uri()


def test_trial_flags_set_the_tracking_section_and_bad_ones_exit_2(tmp_path, capsys):
    import yaml

    config = tmp_path / "trial.yaml"
    config.write_text(yaml.safe_dump(tiny_config(**{"optimization.iterations": 5, "eval.every": 0})))
    out = tmp_path / "out"
    code = main(["trial", str(config), "--out", str(out), "--quiet", "--no-tensorboard", "--wandb", "disabled",
                 "--wandb-project", "p1"])
    assert code == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())["tracking"]
    assert saved["tensorboard"] is None and saved["wandb"]["mode"] == "disabled" and saved["wandb"]["project"] == "p1"
    assert not (out / "tensorboard").exists()
    capsys.readouterr()
    assert main(["trial", str(config), "--out", str(tmp_path / "o2"), "--mlflow", "gopher://x"]) == 2
    assert "tracking.mlflow.uri: got 'gopher://x'" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_changing_trackers_does_not_change_a_trial(tmp_path):
    """A resume may add or drop trackers: the record's identity check ignores tracking."""
    out = tmp_path / "trial"
    run_trial(tiny_config(**{"optimization.iterations": 5, "eval.every": 0}), out)
    result = run_trial(tiny_config(**{"optimization.iterations": 5, "eval.every": 0, "tracking": {"tensorboard": None}}), out)
    assert result.status == "completed"
    with pytest.raises(ConfigError, match="config.yaml differs"):
        run_trial(tiny_config(**{"optimization.iterations": 6, "eval.every": 0}), out)


def test_the_api_page_runs_and_its_study_is_in_mlflow_and_wandb(tmp_path, monkeypatch, capsys):
    """docs/api.md's blocks, run in order in an empty folder (a 2 x 2 study on an embedded
    Ray, tracked in MLflow on SQLite and W&B offline); then every trial's series is read
    back from each tracker and compared with its metrics.jsonl."""
    import re
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    page = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", page, re.S)):
        exec(compile(block, f"docs/api.md block {i}", "exec"), namespace)
    root = tmp_path / "results" / "api-demo"
    assert namespace["one"].status == "completed" and namespace["one"].iteration == 10
    # the command and the function are one: the same table, byte for byte
    capsys.readouterr()
    assert main(["table", str(root), "--kind", "pairwise", "--test", "permutation"]) == 0
    assert capsys.readouterr().out == namespace["pairwise"].render("md")
    trial_dirs = sorted((root / "trials").iterdir())
    assert [d.name for d in trial_dirs] == ["c000-s0", "c000-s1", "c001-s0", "c001-s1"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve()}/mlflow.db")
    parent, children = namespace["parent"], namespace["children"]
    assert parent.info.run_name == "api-demo" and parent.info.status == "FINISHED"
    by_name = {r.info.run_name: r for r in children}
    assert sorted(by_name) == [d.name for d in trial_dirs]
    for folder in trial_dirs:
        rows = TrialRecord(folder).reports()
        run = by_name[folder.name]
        assert run.info.status == "FINISHED" and run.data.tags["label.augment.policy"] in ("none", "diffaugment")
        for group, key in (("losses", "d_loss"), ("metrics", "swd")):
            history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, f"{group}/{key}"))
            _close(history, read.rows_series(rows, group, key))
            runs = read.wandb_runs(folder)
            assert [r["group"] for r in runs] == ["api-demo"] and runs[0]["project"] == "api-demo"
            _close(read.wandb_series(runs, f"{group}/{key}"), read.rows_series(rows, group, key))
        _close(read.tb_series(read.tensorboard(folder / "tensorboard"), "metrics/swd"),
               read.rows_series(rows, "metrics", "swd"))
    # TensorBoard's HParams tab over the study's trials: one session per trial, its final value
    groups = read.tb_session_groups(root / "trials")
    assert sorted(groups) == [f"{d.name}/tensorboard" for d in trial_dirs]
    for folder in trial_dirs:
        final = TrialRecord(folder).reports()[-1]["metrics"]["swd"]
        assert groups[f"{folder.name}/tensorboard"]["hparams/final/swd"] == pytest.approx(final, rel=1e-6)
    assert (tmp_path / "losses.html").is_file() and (root / "report.html").is_file()


def test_a_study_resumes_with_other_trackers(tmp_path):
    """Trackers are not part of a study's identity: a resume may add or drop them."""
    from harness.runner import StudyRunner
    from harness.study import parse_study
    from tests.conftest import run_study_inline

    data = {"name": "tr", "base": tiny_config(**{"optimization.iterations": 5, "eval.every": 0}), "floor_splits": 0}
    run_study_inline(data, tmp_path)
    changed = parse_study({**data, "tracking": {"tensorboard": None, "wandb": {"mode": "disabled"}}})
    StudyRunner(changed, tmp_path, resume=True, out=lambda line: None).prepare()
    other = parse_study({**data, "seeds": [0, 1]})
    with pytest.raises(ConfigError, match="differs"):
        StudyRunner(other, tmp_path, resume=True, out=lambda line: None).prepare()


def test_wandb_online_without_credentials_is_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc: nobody is logged in
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_trial(_config(tmp_path, wandb={"mode": "online"}), tmp_path / "trial")
    assert result.status == "completed"
    said = _tracking_warnings(caught)
    assert len(said) == 1 and "tracking.wandb: start failed (UsageError: No API key configured" in said[0], said


def test_a_trial_on_object_storage_resumes_its_trackers_on_another_node(s3_bucket, tmp_path):
    """The trackers' state and files travel with the record: a trial paused on one node
    (staging copy a) resumes on another (staging copy b, empty) with the same W&B run and
    TensorBoard's purge over the first node's event file."""
    from harness.storage import Remote

    uri = f"s3://{s3_bucket}/tracked"
    spec = parse_trial(_config(tmp_path, wandb={"mode": "offline"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = Trial(spec, TrialRecord(tmp_path / "a", Remote(uri)))
        assert first.start() is None
        first.advance(15)
        first.close()
        result = run_trial(spec, TrialRecord(tmp_path / "b", Remote(uri)))
    assert result.status == "completed" and not _tracking_warnings(caught)
    b = tmp_path / "b"
    rows = TrialRecord(b).reports()
    assert [r["iteration"] for r in rows] == [5, 10, 15, 20]
    assert len(list((b / "tensorboard").glob("events.out.tfevents.*"))) == 2  # a's file came from the store
    _close(read.tb_series(read.tensorboard(b / "tensorboard"), "losses/d_loss"), read.rows_series(rows, "losses", "d_loss"))
    runs = read.wandb_runs(b)
    assert len(runs) == 2 and len({r["id"] for r in runs}) == 1
    _close(read.wandb_series(runs, "losses/d_loss"), read.rows_series(rows, "losses", "d_loss"))
    store = Remote(uri)
    assert json.loads(store.get_bytes("tracking.json"))["wandb"]["run_id"] == runs[0]["id"]
    assert len([k for k in store.list("tensorboard")]) == 2


def test_mlflow_file_store_when_mlflow_allows_it(tmp_path, monkeypatch):
    """A folder as the tracking URI: MLflow 3 keeps its file store only behind
    MLFLOW_ALLOW_FILE_STORE; with it the trial's run is there, without it one warning."""
    from mlflow.tracking import MlflowClient

    cfg = tiny_config(**{"optimization.iterations": 10, "eval.every": 0,
                         "tracking": {"mlflow": {"uri": str(tmp_path / "mlruns"), "experiment": "files"}}})
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_trial(cfg, tmp_path / "refused").status == "completed"
    said = _tracking_warnings(caught)
    assert len(said) == 1 and "tracking.mlflow: start failed" in said[0] and "MLFLOW_ALLOW_FILE_STORE" in said[0]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    out = tmp_path / "allowed"
    assert run_trial(cfg, out).status == "completed"
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run = client.get_run(json.loads(TrialRecord(out).tracking_path.read_text())["mlflow"]["run_id"])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "losses/d_loss")]
    assert steps == [r["iteration"] for r in TrialRecord(out).reports()] == [5, 10]
