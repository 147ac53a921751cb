"""The on-disk record of a trial, and atomic file writes.

One directory per trial; these names are a contract other tools read::

    config.yaml     the resolved TrialSpec
    env.json        package versions, device, threads, dataset fingerprint, ...
    metrics.jsonl   append-only, one JSON object per report; readable while running
    status.json     running | completed | diverged | failed | stopped (+ error, last iteration)
    samples/        sample grids of the fixed evaluation noise
    checkpoints/    see harness.checkpoint

Whole files are replaced atomically (temp file in the same directory, fsync, rename),
so a reader never trusts a half-written file. ``metrics.jsonl`` is appended a line at a
time; a torn last line (a kill mid-write) is ignored by the reader and dropped when a
resumed trial truncates the series back to its checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
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


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; when the block succeeds, fsync it and rename it
    over ``path`` (a reader sees the old file or the new one, never a partial one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
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
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


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

    def create(self) -> None:
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)

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
        line = json.dumps(row, sort_keys=True, default=_json_default) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def truncate_reports(self, last_iteration: int) -> List[Dict[str, Any]]:
        """Keep only reports up to ``last_iteration`` (rewritten atomically)."""
        kept = [r for r in self.reports() if r.get("iteration", 0) <= last_iteration]
        text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in kept)
        atomic_write_text(self.metrics_path, text)
        return kept

    def write_rows(self, rows: Iterable[Dict[str, Any]]) -> None:
        for row in rows:
            self.append_report(row)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
