"""Atomic file writes, and reading what they wrote (no knowledge of any layout).

Whole files are replaced atomically (temp file in the same directory, fsync, rename), so
a reader never trusts a half-written file; a temp file's name holds its writer's host and
pid, and the next write of the same file removes those of writers that died. JSON is
always finite (:func:`finite_json`).
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
from typing import Any, Dict, Iterator, List


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


def append_line(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_json(path: Path) -> Any:
    """A whole JSON file, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def json_line(row: Dict[str, Any]) -> str:
    return json.dumps(finite_json(row), sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
