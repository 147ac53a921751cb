"""The on-disk record of a trial, and atomic file writes.

One directory per trial; these names are a contract other tools read::

    config.yaml     the resolved TrialSpec
    env.json        package versions, device, threads, dataset fingerprint, ...
    metrics.jsonl   append-only, one JSON object per report; readable while running
    status.json     running | completed | diverged | failed | stopped (+ error, last iteration)
    samples/        sample grids of the fixed evaluation noise; nearest-<space>-*.png: the
                    closest generated/training pairs of a memorisation check
    checkpoints/    see harness.checkpoint
    .lock           flock of the one process writing the trial (harness.locks): holder's host, pid

Whole files are replaced atomically (temp file in the same directory, fsync, rename),
so a reader never trusts a half-written file. ``metrics.jsonl`` is appended a line at a
time; a torn last line (a kill mid-write) is ignored by the reader and dropped when a
resumed trial truncates the series back to its checkpoint.
"""
from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

# stopped: a study scheduler (ASHA) ended the trial early on purpose; it is final.
STATUSES = ("running", "completed", "diverged", "failed", "stopped")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


_HOST = socket.gethostname().replace("~", "-")
# A temp file of a write that never finished (its process was killed) and that no live
# process can still rename: one of a dead pid on this host, or an older-style name (no
# host and pid) untouched for this long.
LEGACY_TEMP_AGE_S = 3600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def remove_stale_temps(path: Path) -> List[Path]:
    """Delete the temp files interrupted writes of ``path`` left beside it (a killed
    checkpoint write leaves a full checkpoint's worth); returns what was removed."""
    path = Path(path)
    removed = []
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.(?:(?P<host>[^~]+)~(?P<pid>\d+)~)?[^.]*\.tmp$")
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        m = pattern.match(tmp.name)
        if not m:
            continue
        if m.group("pid") is not None:
            stale = m.group("host") == _HOST and int(m.group("pid")) != os.getpid() and not _pid_alive(int(m.group("pid")))
        else:
            try:
                stale = time.time() - tmp.stat().st_mtime > LEGACY_TEMP_AGE_S
            except OSError:
                continue
        if stale:
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block succeeds, fsync it and rename it
    over ``path`` (a reader sees the old file or the new one, never a partial one). The
    temp file's name holds this host and pid, so the next write of ``path`` removes the
    temp files of writes whose process died (:func:`remove_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}~{os.getpid()}~", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(finite_json(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
                      + "\n")


def finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None: what ganbench writes is
    always JSON (``NaN`` is not), and a reader sees a missing value, not a number."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return finite_json(obj.item())
    return obj


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    """All complete JSON lines of ``path`` (a torn or corrupt line is skipped)."""
    rows = []
    try:
        with open(path, "r", encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # torn last line
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return rows


class TrialRecord:
    """Reads and writes one trial's directory."""

    def __init__(self, root: os.PathLike):
        self.root = Path(root)

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

    def read_config(self) -> Optional[Dict[str, Any]]:
        """The resolved trial config as a plain mapping (None before the trial started)."""
        from harness import safe_yaml

        if not self.config_path.is_file():
            return None
        return safe_yaml.load_file(str(self.config_path))

    def check_config(self, spec: Any) -> None:
        """Refuse to write trial ``spec`` (a TrialSpec) into a folder holding another trial."""
        from harness.errors import ConfigError
        from harness.spec import parse_trial

        on_disk = self.read_config()
        if on_disk is None:
            return
        try:
            # Through the spec, so a section added since (with its default) does not make
            # a trial written by an older ganbench look like another trial.
            on_disk = parse_trial(on_disk).to_dict()
        except ConfigError:
            pass
        if on_disk != spec.to_dict():
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
        atomic_write_json(self.status_path, {"status": status, "updated": time.time(), **fields})

    # metrics series
    def reports(self) -> List[Dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def append_report(self, row: Dict[str, Any]) -> None:
        line = _json_line(row)
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def truncate_reports(self, last_iteration: int) -> List[Dict[str, Any]]:
        """Keep only reports up to ``last_iteration`` (rewritten atomically)."""
        kept = [r for r in self.reports() if r.get("iteration", 0) <= last_iteration]
        text = "".join(_json_line(r) for r in kept)
        atomic_write_text(self.metrics_path, text)
        return kept

    def write_rows(self, rows: Iterable[Dict[str, Any]]) -> None:
        for row in rows:
            self.append_report(row)


def _json_line(row: Dict[str, Any]) -> str:
    return json.dumps(finite_json(row), sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


class StudyRecord:
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

    def __init__(self, root: os.PathLike):
        self.root = Path(root)

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
        atomic_write_text(self.study_path, yaml.safe_dump(as_run, sort_keys=False))

    # -- plans -------------------------------------------------------------------------
    def write_plan(self, entries: List[Dict[str, Any]]) -> None:
        atomic_write_json(self.root / self.PLAN_FILE, entries)

    def read_plan(self) -> List[Dict[str, Any]]:
        return _read_json(self.root / self.PLAN_FILE) or []

    def write_floors(self, entries: List[Dict[str, Any]]) -> None:
        atomic_write_json(self.root / self.FLOORS_FILE, entries)

    def read_floors(self) -> List[Dict[str, Any]]:
        """The study's real-vs-real floors (``harness.metrics.floors``): one entry per
        reference set and protocol; [] when none were computed."""
        return _read_json(self.root / self.FLOORS_FILE) or []

    def write_finalists(self, entries: List[Dict[str, Any]]) -> None:
        atomic_write_json(self.root / self.FINALISTS_FILE, entries)

    # -- trials ------------------------------------------------------------------------
    @property
    def trials_dir(self) -> Path:
        return self.root / self.TRIALS_DIR

    def trial(self, trial_id: str) -> TrialRecord:
        return TrialRecord(self.trials_dir / trial_id)

    def trial_records(self) -> List[TrialRecord]:
        """Every trial folder, in name order."""
        if not self.trials_dir.is_dir():
            return []
        return [TrialRecord(d) for d in sorted(self.trials_dir.iterdir()) if d.is_dir()]

    def trial_info(self, trial_id: str) -> Dict[str, Any]:
        """What the study says about one trial: id, phase, labels, search overrides."""
        return _read_json(self.trials_dir / trial_id / self.TRIAL_INFO_FILE) or {}

    def write_trial_info(self, trial_id: str, info: Dict[str, Any]) -> None:
        atomic_write_json(self.trials_dir / trial_id / self.TRIAL_INFO_FILE, info)

    def attempts(self, trial_id: str) -> List[Dict[str, Any]]:
        return read_jsonl(self.trials_dir / trial_id / self.ATTEMPTS_FILE)

    def append_attempt(self, trial_id: str, attempt: Dict[str, Any]) -> None:
        with open(self.trials_dir / trial_id / self.ATTEMPTS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(attempt, default=str) + "\n")

    def lock_path(self, trial_id: str) -> Path:
        return self.trial(trial_id).lock_path

    # -- sources, Tune, Optuna ---------------------------------------------------------
    def source_dir(self, name: str) -> Path:
        return self.root / self.SOURCES_DIR / name

    @property
    def tune_dir(self) -> Path:
        return self.root / self.TUNE_DIR

    def _done_marker(self, phase: str) -> Path:
        return self.tune_dir / f".{phase}.done"

    def phase_done(self, phase: str) -> bool:
        return self._done_marker(phase).exists()

    def mark_phase_done(self, phase: str) -> None:
        atomic_write_text(self._done_marker(phase), time.strftime("%Y-%m-%dT%H:%M:%S\n"))

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


def _read_json(path: Path) -> Any:
    """A whole JSON file, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
