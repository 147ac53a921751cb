"""Results on object storage (a local S3-compatible server: moto on 127.0.0.1) and a
cluster whose nodes do not share a disk. Nothing here reaches beyond this machine."""
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.storage import Remote
from harness.store import StudyRecord, TrialRecord
from tests.conftest import tiny_config
from tests.test_study_cluster import _proc, kill_driver_and_its_ray, study_data

REPO = Path(__file__).resolve().parents[1]


def _rows(remote, trial):
    """The report rows of a trial on the store: iteration -> the object's bytes."""
    sub = remote.child("trials", trial)
    return {int(Path(k).stem): sub.get_bytes(k) for k in sub.list("metrics")}


def _attempts(remote, trial):
    sub = remote.child("trials", trial)
    return [json.loads(sub.get_bytes(k)) for k in sorted(sub.list("attempts"))]


def _json(remote, key):
    data = remote.get_bytes(key)
    return json.loads(data) if data else {}


# ------------------------------------------------------------------- the record layer
def test_trial_record_on_a_store_rows_truncation_checkpoints_and_pull(s3_bucket, tmp_path):
    import torch

    from harness import checkpoint as ckpt

    remote = Remote(f"s3://{s3_bucket}/one")
    rec = TrialRecord(tmp_path / "staging-a", remote)
    rec.create()
    for it in (10, 20, 30):
        rec.append_report({"iteration": it, "value": float(it)})
    rec.set_status("running", iteration=30)
    for it in (10, 20, 30):
        rec.save_checkpoint(it, {"iteration": it, "w": torch.full((3,), float(it))}, keep=2)
    assert sorted(remote.list("metrics")) == [f"metrics/{i:012d}.json" for i in (10, 20, 30)]
    assert sorted(remote.list("checkpoints")) == [f"checkpoints/ckpt-{i:08d}.{e}" for i in (20, 30)
                                                  for e in ("json", "pt")]  # pruned to 2 on the store too
    assert rec.truncate_reports(20) == [{"iteration": 10, "value": 10.0}, {"iteration": 20, "value": 20.0}]
    assert sorted(remote.list("metrics")) == [f"metrics/{i:012d}.json" for i in (10, 20)]

    other = TrialRecord(tmp_path / "staging-b", remote)  # another node: nothing local yet
    (other.root / "checkpoints").mkdir(parents=True)
    (other.root / "checkpoints" / "ckpt-00000099.json").write_text("{}")  # a stale local leftover
    other.pull()
    assert [r["iteration"] for r in other.reports()] == [10, 20]
    assert other.status()["iteration"] == 30
    state = ckpt.load_latest(other.checkpoints_dir, warn=pytest.fail)  # the stale leftover is gone
    assert state["iteration"] == 30 and torch.equal(state["w"], torch.full((3,), 30.0))


def test_a_checkpoint_payload_reaches_the_store_before_its_manifest(s3_bucket, tmp_path):
    order = []

    class Recording(Remote):
        def put_file(self, rel, local):
            order.append(("put", rel))
            super().put_file(rel, local)

        def delete(self, rel):
            order.append(("delete", rel))
            super().delete(rel)

    rec = TrialRecord(tmp_path / "s", Recording(f"s3://{s3_bucket}/ck"))
    rec.create()
    for it in (1, 2):
        rec.save_checkpoint(it, {"iteration": it}, keep=1)
    assert order == [("put", "checkpoints/ckpt-00000001.pt"), ("put", "checkpoints/ckpt-00000001.json"),
                     ("put", "checkpoints/ckpt-00000002.pt"), ("put", "checkpoints/ckpt-00000002.json"),
                     ("delete", "checkpoints/ckpt-00000001.json"), ("delete", "checkpoints/ckpt-00000001.pt")]


class _Overwriting:
    """A filesystem whose next ``writes`` opened input streams see the object rewritten
    (a longer version each time) after their HEAD and before their first byte: what a
    reader racing a writer meets on S3."""

    def __init__(self, fs, remote, rel, writes):
        self._fs, self._remote, self._rel, self.writes = fs, remote, rel, writes

    def __getattr__(self, name):
        return getattr(self._fs, name)

    def open_input_stream(self, path):
        stream = self._fs.open_input_stream(path)
        if self.writes > 0:
            self.writes -= 1
            self._remote.put_bytes(self._rel, json.dumps({"status": "running", "pad": "x" * (100 - self.writes)}).encode())
        return stream


@pytest.mark.parametrize("writes", [1, 10])
def test_a_read_racing_an_overwrite_gets_one_whole_version(s3_bucket, tmp_path, writes):
    remote = Remote(f"s3://{s3_bucket}/race")
    remote.put_bytes("status.json", b'{"status": "created"}')
    racing = Remote(remote.uri, _Overwriting(remote.fs, remote, "status.json", writes), remote.base)
    if writes > 1:  # rewritten during every read: refused, naming the object, never a prefix
        with pytest.raises(ConfigError, match="rewritten during each of 5 reads") as err:
            racing.get_bytes("status.json")
        assert err.value.path == "--results" and "race/status.json" in str(err.value)
        return
    assert json.loads(racing.get_bytes("status.json"))["status"] == "running"
    racing.writes = 1
    assert racing.download("status.json", tmp_path / "copy.json")
    assert json.loads((tmp_path / "copy.json").read_text())["status"] == "running"
    assert racing.get_bytes("nothing.json") is None and not racing.download("nothing.json", tmp_path / "n")


def test_a_live_lease_is_refused_and_a_stale_one_taken_over(s3_bucket, tmp_path):
    from harness import locks

    remote = Remote(f"s3://{s3_bucket}/leased")
    rec = TrialRecord(tmp_path / "s", remote)
    holder = {"host": "node-7", "pid": 4242, "since": time.time() - 5, "command": "ganbench run x", "token": "t"}
    remote.put_bytes(rec.LEASE_FILE, json.dumps(dict(holder, heartbeat=time.time())).encode())
    with pytest.raises(locks.LockedError) as err:
        rec.lock("out", "a trial directory")
    assert "pid 4242 on host node-7" in str(err.value) and remote.uri in str(err.value)
    assert json.loads(remote.get_bytes(rec.LEASE_FILE))["host"] == "node-7"  # untouched

    remote.put_bytes(rec.LEASE_FILE, json.dumps(dict(holder, heartbeat=time.time() - 2 * locks.LEASE_TTL_S)).encode())
    lock = rec.lock("out", "a trial directory")
    try:
        assert lock.taken_over["host"] == "node-7"
        mine = json.loads(remote.get_bytes(rec.LEASE_FILE))
        assert mine["pid"] == os.getpid()
        with pytest.raises(locks.LockedError):  # another process of this host is refused while it lives
            _take_as_other_pid(remote, rec.LEASE_FILE)
    finally:
        lock.release()
    assert remote.get_bytes(rec.LEASE_FILE) is None  # released: deleted

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    remote.put_bytes(rec.LEASE_FILE, json.dumps(dict(holder, host=socket.gethostname(), pid=int(dead.stdout),
                                                     heartbeat=time.time())).encode())
    lock = rec.lock("out", "a trial directory")  # a dead pid on this host: at once, no TTL wait
    assert lock.taken_over["pid"] == int(dead.stdout)
    lock.release()


def _take_as_other_pid(remote, key):
    code = (f"from harness.storage import Remote; from harness import locks; "
            f"locks.Lease.take(Remote({remote.uri!r}), {key!r}, 'out', 'a trial directory')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO))
    if "LockedError" in proc.stderr:
        from harness import locks

        raise locks.LockedError("out", remote.uri, proc.stderr.strip().splitlines()[-1])
    raise AssertionError(f"a second process took a live lease: {proc.stdout}{proc.stderr}")


def test_assets_are_fetched_from_the_store_and_checked(s3_bucket, tmp_path, monkeypatch):
    from harness import assets
    from harness.data.catalog import import_folder
    from harness.spec import parse_trial
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (i * 40, 10, 200)).save(folder / f"{i}.png")
    import_folder(str(folder), "mine", 16)
    spec = parse_trial(tiny_config(**{"dataset": {"name": "mine", "resolution": 16}}))
    record = StudyRecord.at(f"s3://{s3_bucket}/res", "st")
    entries = assets.collect([spec])
    assert [(e["kind"], e["path"]) for e in entries] == [("dataset", "mine/mine-16.hdf5")]
    assert assets.publish(entries, record) == 1 and assets.publish(entries, record) == 0  # once
    original = assets.local_path(entries[0]).read_bytes()

    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path / "node-b-cache"))  # another node: an empty cache
    assert assets.problems(entries, record) == []
    assert [p.name for p in assets.fetch(entries, record)] == ["mine-16.hdf5"]
    assert assets.local_path(entries[0]).read_bytes() == original
    assert assets.fetch(entries, record) == []  # already there and verified

    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path / "node-c-cache"))
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    record.remote.put_bytes(record.asset_key(entries[0]["sha256"]), bytes(tampered))
    with pytest.raises(ConfigError, match="the store's copy differs"):
        assets.fetch(entries, record)
    assert not assets.local_path(entries[0]).exists()
    assert assets.problems(entries) == [f"has no dataset file {assets.local_path(entries[0])}"]


def test_the_workers_get_ganbench_settings_but_no_secrets():
    from harness.cluster import worker_env

    env = worker_env({"GANBENCH_CACHE": "/c", "GANBENCH_ZOO": "/z", "AWS_ENDPOINT_URL": "http://s3:9000",
                      "AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "k",
                      "AWS_SESSION_TOKEN": "t", "HOME": "/root"})
    assert env == {"GANBENCH_CACHE": "/c", "GANBENCH_ZOO": "/z", "AWS_ENDPOINT_URL": "http://s3:9000",
                   "AWS_REGION": "eu-west-1"}


# ------------------------------------------------------------------------ bad storage
def _study_file(tmp_path, name="bad"):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_data(name, 40, [0])))
    return path


def test_unusable_storage_is_one_error_before_anything_runs(s3_bucket, tmp_path, capsys, monkeypatch):
    from harness.cli import main

    study = _study_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    cases = {
        "s3://no-such-bucket-here/res": "bucket 'no-such-bucket-here' does not exist; create it first",
        "s3:///res": "s3://BUCKET/PREFIX (no bucket named)",
        "nosuchscheme://x/y": "a local folder or a URI pyarrow.fs resolves",
    }
    for uri, expected in cases.items():
        assert main(["run", str(study), "--results", uri]) == 2, uri
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, err
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    t0 = time.monotonic()
    assert main(["run", str(study), "--results", f"s3://{s3_bucket}/res"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect to http://127.0.0.1:9" in err and time.monotonic() - t0 < 30, err
    assert not (tmp_path / "results").exists() and not (tmp_path / "no-such-bucket-here").exists()


def test_existing_results_on_the_store_are_untouched_by_a_refused_run(s3_bucket, tmp_path, capsys, monkeypatch):
    from harness.cli import main

    remote = Remote(f"s3://{s3_bucket}/res/bad")
    remote.put_bytes("study.yaml", b"name: bad\nsomething: else\n")
    before = {k: remote.get_bytes(k) for k in remote.list()}
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(_study_file(tmp_path)), "--results", f"s3://{s3_bucket}/res"]) == 2
    assert "the same study as the one already run there" in capsys.readouterr().err
    assert {k: remote.get_bytes(k) for k in remote.list()} == before


# ------------------------------------------------------------- a study on the store
def _kill_driver_when(study_file, uri, study, log_path, cwd, env):
    """Start ``ganbench run`` on ``uri`` in its own session; SIGKILL it (and every process
    of this test's cache) once the store shows one trial completed while another has a
    checkpoint at >= 100. Returns the completed trials' rows."""
    remote = Remote(uri).child(study)
    log = open(log_path, "w")
    driver = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(study_file), "--results", uri],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=str(cwd))
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            keys = remote.list("trials")
            trials = sorted({k.split("/")[1] for k in keys})
            states = {t: _json(remote, f"trials/{t}/status.json").get("status") for t in trials}
            done = [t for t in trials if states[t] == "completed"]
            mid = [t for t in trials if states[t] == "running" and any(
                k.startswith(f"trials/{t}/checkpoints/ckpt-") and k.endswith(".json")
                and int(Path(k).stem.split("-")[1]) >= 100 for k in keys)]
            if done and mid:
                break
            assert driver.poll() is None, Path(log_path).read_text()
            time.sleep(0.2)
        else:
            pytest.fail("the study never had a finished and a running trial at once: " + Path(log_path).read_text())
        kill_driver_and_its_ray(driver, env)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        log.close()
    return {t: _rows(remote, t) for t in done}


@pytest.mark.timeout(600)
def test_study_on_s3_survives_a_killed_driver_resumes_and_reports_from_the_store(s3_bucket, tmp_path, monkeypatch):
    from harness.cli import main

    work = tmp_path / "work"  # the driver's working directory: no results folder may appear in it
    work.mkdir()
    monkeypatch.chdir(work)
    cache = tmp_path / "node-cache"
    monkeypatch.setenv("GANBENCH_CACHE", str(cache))
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(study_data("s3drv", 400, [0, 1, 2, 3],
                                                    resources={"cpus": 1, "max_concurrent": 2})))
    uri = f"s3://{s3_bucket}/lab/results"
    finished = _kill_driver_when(study_file, uri, "s3drv", tmp_path / "driver.log", work,
                                 dict(os.environ, PYTHONUNBUFFERED="1"))
    remote = Remote(uri).child("s3drv")
    interrupted = sorted({k.split("/")[1] for k in remote.list("trials")} - set(finished))
    assert finished and interrupted

    assert main(["run", str(study_file), "--results", uri]) == 2  # refuses without --resume
    # resumed from another machine: an empty cache, so no staging copy of the killed run
    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path / "resume-machine"))
    assert main(["run", str(study_file), "--results", uri, "--resume"]) == 0
    summary = json.loads(remote.get_bytes("summary.json"))
    assert len(summary) == 4 and {row["status"] for row in summary} == {"completed"}
    for trial, rows in finished.items():
        assert _rows(remote, trial) == rows  # not rerun, not rewritten
    for trial in interrupted:
        assert sorted(_rows(remote, trial)) == list(range(20, 401, 20)), trial  # every row exactly once
        assert all(a["node_id"] for a in _attempts(remote, trial))
    resumed = [a for t in interrupted for a in _attempts(remote, t)[1:]]
    assert any(a.get("resumed_from", 0) >= 100 for a in resumed)
    assert not remote.list("trials/" + interrupted[0] + "/.lease.json")  # released

    # the report is built from the store by a reader with nothing local (another machine)
    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path / "reader-cache"))
    assert main(["report", f"{uri}/s3drv", "--no-png"]) == 0
    page = remote.get_bytes("report.html").decode()
    assert "s3drv" in page and all(t in page for t in interrupted)
    assert main(["summary", f"{uri}/s3drv", "--format", "csv"]) == 0
    assert list(work.iterdir()) == []  # nothing was written to a local results folder


# -------------------------------------------------- a node that cannot see the results
def _can_hide_a_folder():
    try:
        return subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


needs_namespaces = pytest.mark.skipif(not _can_hide_a_folder(), reason="needs a mount namespace (unshare -m, as "
                                      "root) to hide folders from one node")


@contextmanager
def two_nodes(hidden):
    """A head node (this process's cluster, 1 CPU) and a second node started by ``ray
    start`` in its own mount namespace, where an empty tmpfs covers each folder of
    ``hidden`` — as a machine without the shared disk sees them — and without ganbench's
    variables (it gets them from the driver's runtime environment). Yields (cluster, the
    hidden node's id, its address); the study joins with ``address=cluster.address``."""
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    ray_bin = str(Path(sys.executable).with_name("ray"))
    mounts = " && ".join(f'mount -t tmpfs tmpfs "{folder}"' for folder in hidden)
    worker = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f'{mounts} && exec "{ray_bin}" start --address={cluster.address} --num-cpus=1 --block --disable-usage-stats'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GANBENCH_")})
    try:
        deadline = time.time() + 120
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        while len([n for n in ray.nodes() if n["Alive"]]) < 2:
            assert worker.poll() is None and time.time() < deadline, "the second node did not join"
            time.sleep(0.5)
        node, address = next((n["NodeID"], n["NodeManagerAddress"]) for n in ray.nodes()
                             if n["Alive"] and n["NodeID"] != cluster.head_node.node_id)
        ray.shutdown()
        yield cluster, node, address
    finally:
        ray.shutdown()
        family = [worker.pid] + [p.pid for p in psutil.Process(worker.pid).children(recursive=True)] \
            if worker.poll() is None else []
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        psutil.wait_procs([p for p in map(_proc, family) if p is not None], timeout=30)
        cluster.shutdown()


@pytest.mark.timeout(240)
@needs_namespaces
def test_a_node_that_cannot_see_a_local_results_folder_is_refused_before_scheduling(tmp_path, monkeypatch):
    from harness.runner import run_study
    from harness.study import parse_study

    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    results.mkdir()
    with two_nodes([results]) as (cluster, hidden, address):
        study = parse_study(study_data("unseen", 40, [0, 1]))
        with pytest.raises(ConfigError) as err:
            run_study(study, results, address=cluster.address, out=lambda line: None)
        message = str(err.value)
        assert message.startswith(f"--results: got '{results / 'unseen'}'")
        assert f"node {hidden[:12]} ({address}) cannot read the results folder {results / 'unseen'}" in message
        assert f"node {cluster.head_node.node_id[:12]}" not in message  # the head sees it
        assert not (results / "unseen" / "trials").exists()  # nothing was scheduled
        assert not (results / "unseen" / "tune").exists()
        assert not (results / "unseen" / ".ganbench-probe").exists()  # the probe is cleaned up


@pytest.mark.timeout(300)
@needs_namespaces
def test_a_cluster_without_a_shared_disk_runs_a_study_on_s3(s3_bucket, tmp_path, monkeypatch):
    """The second node sees neither the driver's cache (datasets) nor its staging: it
    fetches the dataset from the store and its trials' records reach the store."""
    from PIL import Image

    from harness.data.catalog import import_folder
    from harness.runner import run_study
    from harness.study import parse_study

    driver_disk = tmp_path / "driver-disk"
    (driver_disk / "imgs").mkdir(parents=True)
    monkeypatch.setenv("GANBENCH_CACHE", str(driver_disk / "cache"))
    for i in range(40):
        Image.new("RGB", (16, 16), ((i * 37) % 256, (i * 91) % 256, 200)).save(driver_disk / "imgs" / f"{i}.png")
    import_folder(str(driver_disk / "imgs"), "mine", 16)
    data = study_data("nodisk", 60, [0, 1])
    data["base"]["dataset"] = {"name": "mine", "resolution": 16, "channels": 3}
    with two_nodes([driver_disk]) as (cluster, hidden, address):
        frame = run_study(parse_study(data), f"s3://{s3_bucket}/res", address=cluster.address, out=lambda line: None)
    assert set(frame["status"]) == {"completed"}
    remote = Remote(f"s3://{s3_bucket}/res/nodisk")
    tries = {t: _attempts(remote, t) for t in ("c000-s0", "c000-s1")}
    on_hidden = [a for runs in tries.values() for a in runs if a["node_id"] == hidden]
    assert on_hidden, tries  # the second node ran a trial ...
    # ... on the dataset it fetched from the store into the cache the driver's runtime env named
    assert on_hidden[0]["fetched"] == [str(driver_disk / "cache" / "datasets" / "mine" / "mine-16.hdf5")]
    assert all(sorted(_rows(remote, t)) == [20, 40, 60] for t in tries)


def test_a_single_trial_on_the_store_resumes_from_it_on_another_machine(s3_bucket, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    config = tmp_path / "t.yaml"
    config.write_text(yaml.safe_dump(tiny_config(**{"optimization.iterations": 20})))
    uri = f"s3://{s3_bucket}/single/t1"
    monkeypatch.chdir(tmp_path)
    assert main(["trial", str(config), "--out", uri, "--quiet", "--set", "optimization.iterations=10"]) == 0
    remote = Remote(uri)
    assert sorted(int(Path(k).stem) for k in remote.list("metrics")) == [5, 10]
    first = {k: remote.get_bytes(k) for k in remote.list("metrics")}
    capsys.readouterr()
    # another machine (an empty cache and staging) continues the same trial to 20
    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path / "other-machine"))
    config.write_text(yaml.safe_dump(tiny_config(**{"optimization.iterations": 20})))
    assert main(["trial", str(config), "--out", uri, "--quiet"]) == 2  # another config: refused
    assert "config.yaml differs" in capsys.readouterr().err
    assert main(["trial", str(config), "--out", uri, "--quiet", "--set", "optimization.iterations=10"]) == 0
    assert json.loads(capsys.readouterr().out)["out"] == uri
    assert {k: remote.get_bytes(k) for k in remote.list("metrics")} == first  # completed: nothing rerun
    assert _json(remote, "status.json")["status"] == "completed"
    assert main(["trial", str(config), "--out", "s3://no-such-bucket-x/t", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] and not (tmp_path / "s3:").exists()


def test_a_second_pull_fetches_only_what_changed(s3_bucket, tmp_path):
    calls = []

    class Counting(Remote):
        def download(self, rel, local):
            calls.append(("download", rel))
            return super().download(rel, local)

        def get_bytes(self, rel):
            calls.append(("get", rel))
            return super().get_bytes(rel)

    uri = f"s3://{s3_bucket}/res/st"
    writer = StudyRecord(tmp_path / "writer", Remote(uri))
    writer.write_study({"name": "st"})
    trial = writer.trial("t0")
    trial.create()
    for it in (5, 10):
        trial.append_report({"iteration": it})
    (trial.samples_dir / "samples-00000005.png").write_bytes(b"png")
    trial.publish(trial.samples_dir / "samples-00000005.png")
    trial.set_status("running", iteration=10)

    reader = StudyRecord(tmp_path / "reader", Counting(uri))
    reader.pull()
    assert ("download", "trials/t0/samples/samples-00000005.png") in calls
    assert [c for c in calls if c[0] == "get"] == [("get", "trials/t0/metrics/000000000005.json"),
                                                  ("get", "trials/t0/metrics/000000000010.json")]
    calls.clear()
    trial.append_report({"iteration": 15})
    reader.pull()
    # record files that are rewritten in place come again; the PNG and the old rows do not
    assert sorted(calls) == [("download", "study.yaml"), ("download", "trials/t0/status.json"),
                             ("get", "trials/t0/metrics/000000000015.json")]
    assert [r["iteration"] for r in reader.trial("t0").reports()] == [5, 10, 15]
    trial.truncate_reports(5)  # a resume on the writer's side: rows after 5 deleted
    reader.pull()
    assert [r["iteration"] for r in reader.trial("t0").reports()] == [5]
    shared = reader.trial("t0")  # one machine: the reader's staging copy is also a writer's
    shared.append_report({"iteration": 10})  # appended locally and published
    reader.pull()
    assert [r["iteration"] for r in reader.trial("t0").reports()] == [5, 10]  # not twice


@pytest.mark.timeout(300)
def test_a_search_on_s3_keeps_its_optuna_database_on_the_store(s3_bucket, tmp_path, monkeypatch):
    import optuna

    from harness.runner import run_study
    from harness.study import parse_study

    monkeypatch.chdir(tmp_path)
    data = study_data("s3srch", 60, [0], resources={"cpus": 1, "max_concurrent": 2})
    data["search"] = {"metric": "swd", "n_trials": 3, "scheduler": {"name": "none"},
                      "space": {"optimization.lr_g": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}}
    run_study(parse_study(data), f"s3://{s3_bucket}/res", out=lambda line: None)
    remote = Remote(f"s3://{s3_bucket}/res/s3srch")
    db = tmp_path / "downloaded-optuna.db"
    assert remote.download("optuna.db", db)
    ostudy = optuna.load_study(study_name="s3srch", storage=f"sqlite:///{db}")
    complete = [t for t in ostudy.trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary = json.loads(remote.get_bytes("summary.json"))
    assert len(complete) == 3 and {r["status"] for r in summary} == {"completed"}
    assert sorted(round(t.value, 6) for t in complete) == sorted(round(r["objective"], 6) for r in summary)
    assert remote.get_bytes("tune/.search.done") is not None


def test_refused_and_missing_credentials_are_named(tmp_path, monkeypatch):
    from tests.s3server import LocalS3

    server = LocalS3(auth=True)  # moto checking every request's credentials
    try:
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws here
        for key, value in dict(server.env(), AWS_ACCESS_KEY_ID="nobody", AWS_SECRET_ACCESS_KEY="wrong").items():
            monkeypatch.setenv(key, value)
        with pytest.raises(ConfigError, match=r"the credentials were refused \(AWS_ACCESS_KEY_ID"):
            Remote("s3://lab/res").check()
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        with pytest.raises(ConfigError, match=r"no credentials found \(set AWS_ACCESS_KEY_ID"):
            Remote("s3://lab/res").check()
    finally:
        server.stop()
