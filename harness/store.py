"""The records of trials and studies: the one place that knows their layout.

One directory per trial; these names are a contract other tools read::

    config.yaml     the resolved TrialSpec
    env.json        package versions, device, threads, dataset fingerprint, ...
    metrics.jsonl   append-only, one JSON object per report; readable while running
    status.json     running | completed | diverged | failed | stopped (+ error, last iteration)
    samples/        sample grids of the fixed evaluation noise; nearest-<space>-*.png: the
                    closest generated/training pairs of a memorisation check
    checkpoints/    see harness.checkpoint
    tracking.json   the trackers' run ids and last steps (harness.tracking); tensorboard/, wandb/
    .lock           flock of the one process writing the trial (harness.locks): holder's host, pid

Whole files are replaced atomically (:mod:`harness.files`), so a reader never trusts a
half-written file. ``metrics.jsonl`` is appended a line at a time; a torn last line (a
kill mid-write) is ignored by the reader and dropped when a resumed trial truncates the
series back to its checkpoint.

**On object storage** (records given a :class:`harness.storage.Remote`) a record is
written into a local staging copy (:func:`harness.storage.staging_dir`) and each file is
published as one whole object once complete (no append, no rename there; a put is atomic):

- ``metrics.jsonl`` is one object per row, ``metrics/<iteration:012d>.json``; a resume's
  truncation deletes the rows after its checkpoint (keyed by iteration: never duplicated);
- ``attempts.jsonl`` is one object per start, ``attempts/<ns>-<host>-<pid>.json``;
- a checkpoint's ``.pt`` is uploaded before its manifest (a manifest on the store vouches
  for a complete payload); pruning deletes manifests first;
- ``.lock`` is a lease object, ``.lease.json`` (:mod:`harness.locks`);
- whoever takes a trial's lock first replaces the staging copy with the store's
  (:meth:`TrialRecord.pull`); readers pull the whole study (:meth:`StudyRecord.pull`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from harness.files import (
    _HOST, append_line, atomic_write_json, atomic_write_text, finite_json, json_line, read_json, read_jsonl,
)

if TYPE_CHECKING:
    from harness.storage import Remote

# record files rewritten in place (same name, maybe the same size): a pull fetches them again
_REWRITTEN = (".json", ".yaml", ".csv", ".html", ".done")
# stopped: a study scheduler (ASHA) ended the trial early on purpose; it is final.
STATUSES = ("running", "completed", "diverged", "failed", "stopped")


class _Record:
    """A folder of records, and (given ``remote``) its copy on object storage: ``root``
    is then the local staging copy, and every file written is published."""

    def __init__(self, root: os.PathLike, remote: Optional["Remote"] = None):
        self.root = Path(root)
        self.remote = remote

    @classmethod
    def open(cls, location: Any) -> Any:
        """The record at ``location``: a folder, or a URI (``s3://bucket/prefix/...``) whose
        record is staged locally (call ``pull`` to bring the staging copy up to date)."""
        from harness import storage

        if storage.is_uri(location):
            remote = storage.Remote(str(location))
            return cls(storage.staging_dir(remote.uri), remote)
        return cls(storage.local_path(location))

    TRACKING_FILE = "tracking.json"

    @property
    def tracking_path(self) -> Path:
        """What its trackers keep to continue their runs (harness.tracking)."""
        return self.root / self.TRACKING_FILE

    @property
    def where(self) -> str:
        """Where the record lives, for messages: the store's URI or the folder."""
        return self.remote.uri if self.remote is not None else str(self.root)

    def publish(self, path: os.PathLike) -> None:
        """Upload the complete local file ``path`` (inside this record) to the store."""
        if self.remote is not None:
            path = Path(path)
            self.remote.put_file(path.relative_to(self.root).as_posix(), path)

    def write_output(self, path: os.PathLike, text: str) -> None:
        """Write a file of this record atomically and publish it."""
        atomic_write_text(Path(path), text)
        self.publish(path)

    def write_json(self, path: Path, obj: Any) -> None:
        atomic_write_json(path, obj)
        self.publish(path)


class TrialRecord(_Record):
    """Reads and writes one trial's directory."""

    ROWS_DIR = "metrics"          # on object storage: one object per report row
    LEASE_FILE = ".lease.json"    # on object storage: the writer's lease (harness.locks)

    # paths
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def env_path(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def status_path(self) -> Path:
        return self.root / "status.json"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def lock_path(self) -> Path:
        """The flock every process writing this trial holds (harness.locks)."""
        return self.root / ".lock"

    def sample_path(self, iteration: int) -> Path:
        return self.samples_dir / f"samples-{iteration:08d}.png"

    def sample_grids(self) -> List[Path]:
        """The sample grid PNGs, oldest first."""
        return sorted(self.samples_dir.glob("samples-*.png"))

    def pairs_path(self, iteration: int, space: str) -> Path:
        """The closest generated/training pairs of a memorisation check in feature ``space``."""
        return self.samples_dir / f"nearest-{space}-{iteration:08d}.png"

    def pair_grids(self, space: str) -> List[Path]:
        """The closest-pairs PNGs of feature ``space``, oldest first."""
        return sorted(self.samples_dir.glob(f"nearest-{space}-*.png"))

    def create(self) -> None:
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)

    def write_config(self, text: str) -> None:
        self.write_output(self.config_path, text)

    def read_env(self) -> Optional[Dict[str, Any]]:
        return read_json(self.env_path)

    def write_env(self, env: Dict[str, Any]) -> None:
        self.write_json(self.env_path, env)

    # checkpoints (the format is harness.checkpoint's)
    def save_checkpoint(self, iteration: int, payload: Dict[str, Any], keep: int) -> Path:
        """Write checkpoint ``iteration`` and prune to the newest ``keep``; on a store the
        payload is uploaded before its manifest, and pruned manifests go before payloads."""
        from harness import checkpoint as ckpt

        pt = ckpt.save(self.checkpoints_dir, iteration, payload, keep=keep)
        if self.remote is not None:
            self.publish(pt)
            self.publish(ckpt.manifest_path(pt))
            kept = {p.name for p in self.checkpoints_dir.glob("ckpt-*")}
            stale = [k for k in self.remote.list(self.checkpoints_dir.name) if Path(k).name not in kept]
            for key in sorted(stale, key=lambda k: not k.endswith(".json")):  # manifests first
                self.remote.delete(key)
        return pt

    def has_checkpoint(self) -> bool:
        """Whether a checkpoint manifest exists (on the store, for a record there)."""
        from harness import checkpoint as ckpt

        if self.remote is not None:
            return any(k.endswith(".json") for k in self.remote.list(self.checkpoints_dir.name))
        return ckpt.latest_iteration(self.checkpoints_dir) is not None

    def lock(self, field: str, what: str, wait_s: float = 0.0) -> "Any":
        """Take this record's writer lock (harness.locks): the folder's flock, and on a
        store its lease too."""
        from harness import locks

        return locks.acquire(self.lock_path, field, what, wait_s=wait_s,
                             lease=(self.remote, self.LEASE_FILE) if self.remote is not None else None)

    def pull(self) -> None:
        """Replace the staging copy with the store's record (before a process resumes the
        trial: the staging copy may be another attempt's, or none). A no-op locally."""
        import shutil

        from harness.storage import pull_into

        if self.remote is None:
            return
        objects = self.remote.list()
        for path in (self.config_path, self.env_path, self.status_path, self.metrics_path):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        pull_into(self.remote, objects, self.root, {self.ROWS_DIR: self.metrics_path.name},
                  skip=(self.samples_dir.name,), lease=self.LEASE_FILE, rewritten=_REWRITTEN)

    def read_config(self) -> Optional[Dict[str, Any]]:
        """The resolved trial config as a plain mapping (None before the trial started)."""
        from harness import safe_yaml

        if not self.config_path.is_file():
            return None
        return safe_yaml.load_file(str(self.config_path))

    def check_config(self, spec: Any) -> None:
        """Refuse to write trial ``spec`` (a TrialSpec) into a folder holding another trial."""
        from harness.errors import ConfigError
        from harness.spec import identity, parse_trial

        on_disk = self.read_config()
        if on_disk is None:
            return
        try:
            # Through the spec, so a section added since (with its default) does not make
            # a trial written by an older ganbench look like another trial.
            on_disk = parse_trial(on_disk).to_dict()
        except ConfigError:
            pass
        if identity(on_disk) != identity(spec.to_dict()):
            raise ConfigError("out", str(self.root), "an empty directory or one holding this same trial (its "
                              "config.yaml differs; use another --out to keep both)")

    # status
    def status(self) -> Optional[Dict[str, Any]]:
        try:
            with open(self.status_path, "r", encoding="utf-8") as fh:
                return json.load(fh)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def set_status(self, status: str, **fields: Any) -> None:
        assert status in STATUSES, status
        self.write_json(self.status_path, {"status": status, "updated": time.time(), **fields})

    # metrics series
    def reports(self) -> List[Dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def append_report(self, row: Dict[str, Any]) -> None:
        line = json_line(row)
        append_line(self.metrics_path, line)
        if self.remote is not None:
            self.remote.put_bytes(_row_key(self.ROWS_DIR, int(row.get("iteration", 0))), line.encode("utf-8"))

    def truncate_reports(self, last_iteration: int) -> List[Dict[str, Any]]:
        """Keep only reports up to ``last_iteration`` (rewritten atomically; on a store the
        later row objects are deleted)."""
        kept = [r for r in self.reports() if r.get("iteration", 0) <= last_iteration]
        text = "".join(json_line(r) for r in kept)
        atomic_write_text(self.metrics_path, text)
        if self.remote is not None:
            for key in self.remote.list(self.ROWS_DIR):
                if _row_iteration(key) is None or _row_iteration(key) > last_iteration:
                    self.remote.delete(key)
        return kept


def _row_key(folder: str, iteration: int) -> str:
    return f"{folder}/{iteration:012d}.json"


def _row_iteration(key: str) -> Optional[int]:
    return int(Path(key).stem) if Path(key).stem.isdigit() else None


class StudyRecord(_Record):
    """Reads and writes one study's results folder — the only code that knows its layout
    (``TrialRecord`` knows the inside of each ``trials/<id>/``)::

        study.yaml        the study as run (base inlined), compared on --resume
        plan.json         the planned grid trials (ids, phases, labels)
        finalists.json    the finalists picked after a search
        floors.json       the real-vs-real floor of every metric value, per reference set
        trials/<id>/      one TrialRecord each, plus study_trial.json (phase, labels,
                          overrides) and attempts.jsonl (one line per start)
        sources/<name>/   the record of each source model the study pretrained
        tune/<phase>/     Ray Tune's experiment (grid | search | finalists) and .<phase>.done
        optuna.db         the Optuna study of a search (SQLite)
        summary.csv/json  one row per trial
        report.html       the HTML report
        tracking.json     the study's own tracker runs (an MLflow parent run id)
        assets.json       on object storage: the dataset and source-model files the trials
                          read (sha256 each), uploaded to assets/sha256/ (harness.assets)

    On object storage (``remote``) ``root`` is the local staging copy; every file is
    published as written, ``tune/`` is Ray Tune's own (it writes there directly through
    the same ``pyarrow.fs`` filesystem), and :meth:`pull` brings the staging copy up to
    date for readers (the driver before a resume or a summary, ``ganbench report``).
    """

    STUDY_FILE = "study.yaml"
    PLAN_FILE = "plan.json"
    FINALISTS_FILE = "finalists.json"
    FLOORS_FILE = "floors.json"
    TRIALS_DIR = "trials"
    TRIAL_INFO_FILE = "study_trial.json"
    ATTEMPTS_FILE = "attempts.jsonl"
    SOURCES_DIR = "sources"
    TUNE_DIR = "tune"
    OPTUNA_FILE = "optuna.db"
    SUMMARY_CSV = "summary.csv"
    SUMMARY_JSON = "summary.json"
    REPORT_FILE = "report.html"
    ASSETS_FILE = "assets.json"
    ASSETS_DIR = "assets"
    ROW_FOLDERS = {TrialRecord.ROWS_DIR: "metrics.jsonl", "attempts": ATTEMPTS_FILE}

    @classmethod
    def at(cls, results: Any, name: str) -> "StudyRecord":
        """The record of study ``name`` under the results root ``results`` (a folder, or a
        URI such as ``s3://bucket/prefix``: then staged locally)."""
        from harness import storage

        if storage.is_uri(results):
            uri = storage.join(str(results), name)
            return cls(storage.staging_dir(uri), storage.Remote(uri))
        return cls(storage.local_path(results).resolve() / name)

    def is_empty(self) -> bool:
        if self.remote is not None:
            return not self.remote.list()
        return not any(self.root.glob("*"))

    def pull(self, samples: bool = True) -> None:
        """Bring the staging copy up to date with the store: every record file, summary and
        (``samples``) sample grid; never checkpoints or Ray Tune's folder. A no-op locally."""
        from harness.storage import pull_into

        if self.remote is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        trial = TrialRecord(self.root)
        skip = (trial.checkpoints_dir.name, self.TUNE_DIR, self.ASSETS_DIR) + (() if samples else (trial.samples_dir.name,))
        pull_into(self.remote, self.remote.list(), self.root, self.ROW_FOLDERS, lease=TrialRecord.LEASE_FILE,
                  skip=skip, rewritten=_REWRITTEN)

    def tune_storage(self) -> Tuple[str, Any]:
        """(storage_path, storage_filesystem) of Ray Tune's experiments of this study."""
        if self.remote is None:
            return str(self.tune_dir), None
        tune = self.remote.child(self.TUNE_DIR)
        return tune.base, tune.fs

    def tune_phase(self, phase: str) -> str:
        """The path of one phase's Tune experiment inside :meth:`tune_storage`'s filesystem
        (as Tuner.can_restore and Tuner.restore take it with that filesystem)."""
        storage_path, _ = self.tune_storage()
        return f"{storage_path}/{phase}"

    # -- the study as run --------------------------------------------------------------
    @property
    def study_path(self) -> Path:
        return self.root / self.STUDY_FILE

    def exists(self) -> bool:
        """Whether this is a study results folder (one holding its study.yaml)."""
        return self.study_path.is_file()

    def read_study(self) -> Optional[Dict[str, Any]]:
        """The study as run (a plain mapping), or None when there is no study.yaml."""
        from harness import safe_yaml

        if not self.study_path.is_file():
            return None
        return safe_yaml.load_file(str(self.study_path)) or {}

    def study_text(self) -> str:
        return self.study_path.read_text() if self.exists() else ""

    def write_study(self, as_run: Dict[str, Any]) -> None:
        import yaml

        self.root.mkdir(parents=True, exist_ok=True)
        self.write_output(self.study_path, yaml.safe_dump(as_run, sort_keys=False))

    # -- plans -------------------------------------------------------------------------
    def write_plan(self, entries: List[Dict[str, Any]]) -> None:
        self.write_json(self.root / self.PLAN_FILE, entries)

    def read_plan(self) -> List[Dict[str, Any]]:
        return read_json(self.root / self.PLAN_FILE) or []

    def write_floors(self, entries: List[Dict[str, Any]]) -> None:
        self.write_json(self.root / self.FLOORS_FILE, entries)

    def read_floors(self) -> List[Dict[str, Any]]:
        """The study's real-vs-real floors (``harness.metrics.floors``): one entry per
        reference set and protocol; [] when none were computed."""
        return read_json(self.root / self.FLOORS_FILE) or []

    def write_finalists(self, entries: List[Dict[str, Any]]) -> None:
        self.write_json(self.root / self.FINALISTS_FILE, entries)

    def write_assets(self, entries: List[Dict[str, Any]]) -> None:
        self.write_json(self.root / self.ASSETS_FILE, entries)

    def read_assets(self) -> List[Dict[str, Any]]:
        return read_json(self.root / self.ASSETS_FILE) or []

    def asset_key(self, sha256: str) -> str:
        """The object (on the store) holding the uploaded file with digest ``sha256``."""
        return f"{self.ASSETS_DIR}/sha256/{sha256}"

    # -- trials ------------------------------------------------------------------------
    @property
    def trials_dir(self) -> Path:
        return self.root / self.TRIALS_DIR

    def trial(self, trial_id: str) -> TrialRecord:
        remote = self.remote.child(self.TRIALS_DIR, trial_id) if self.remote is not None else None
        return TrialRecord(self.trials_dir / trial_id, remote)

    def trial_records(self) -> List[TrialRecord]:
        """Every trial folder (of the staging copy on object storage), in name order."""
        if not self.trials_dir.is_dir():
            return []
        return [self.trial(d.name) for d in sorted(self.trials_dir.iterdir()) if d.is_dir()]

    def trial_info(self, trial_id: str) -> Dict[str, Any]:
        """What the study says about one trial: id, phase, labels, search overrides."""
        return read_json(self.trials_dir / trial_id / self.TRIAL_INFO_FILE) or {}

    def write_trial_info(self, trial_id: str, info: Dict[str, Any]) -> None:
        self.write_json(self.trials_dir / trial_id / self.TRIAL_INFO_FILE, info)

    def attempts(self, trial_id: str) -> List[Dict[str, Any]]:
        return read_jsonl(self.trials_dir / trial_id / self.ATTEMPTS_FILE)

    def append_attempt(self, trial_id: str, attempt: Dict[str, Any]) -> None:
        line = json.dumps(finite_json(attempt), default=str) + "\n"
        path = self.trials_dir / trial_id / self.ATTEMPTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        append_line(path, line)
        if self.remote is not None:
            name = f"{time.time_ns():020d}-{_HOST}-{os.getpid()}.json"
            self.remote.put_bytes(f"{self.TRIALS_DIR}/{trial_id}/attempts/{name}", line.encode("utf-8"))


    # -- sources, Tune, Optuna ---------------------------------------------------------
    def source_dir(self, name: str) -> Path:
        return self.root / self.SOURCES_DIR / name

    def source(self, name: str) -> TrialRecord:
        """The record of the source model ``name`` this study pretrains."""
        remote = self.remote.child(self.SOURCES_DIR, name) if self.remote is not None else None
        return TrialRecord(self.source_dir(name), remote)

    @property
    def tune_dir(self) -> Path:
        return self.root / self.TUNE_DIR

    def _done_marker(self, phase: str) -> Path:
        return self.tune_dir / f".{phase}.done"

    def phase_done(self, phase: str) -> bool:
        if self._done_marker(phase).exists():
            return True
        return self.remote is not None and self.remote.info(
            self._done_marker(phase).relative_to(self.root).as_posix()) is not None

    def mark_phase_done(self, phase: str) -> None:
        self.write_output(self._done_marker(phase), time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    @property
    def optuna_path(self) -> Path:
        return self.root / self.OPTUNA_FILE

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.optuna_path}"

    # -- outputs -----------------------------------------------------------------------
    @property
    def summary_csv(self) -> Path:
        return self.root / self.SUMMARY_CSV

    @property
    def summary_json(self) -> Path:
        return self.root / self.SUMMARY_JSON

    @property
    def report_path(self) -> Path:
        return self.root / self.REPORT_FILE
