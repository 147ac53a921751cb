"""Exclusive locks on results folders (POSIX ``flock``), the one place ganbench takes them.

A trial's folder is written by one process at a time, whichever entry point started it
(``ganbench trial``, ``pretrain``, a study's Ray actor): :func:`acquire` takes the lock
without waiting by default and refuses with a :class:`LockedError` (exit 2) that names
the holder's host and pid from the lock file. The operating system drops the lock of a
process that dies, however it dies, so a stale lock is taken over by the next run; the
holder it names is then reported as taken over. Locks are for POSIX filesystems (local
disks, NFS with working locks); object storage comes with its own issue.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from harness.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no locks; atomic renames still keep every file whole
    fcntl = None  # type: ignore[assignment]


class LockedError(ConfigError):
    """The folder is held by another live process."""


class FileLock:
    """A held lock; :meth:`release` (or process exit) frees it."""

    def __init__(self, path: Path, handle: Any, taken_over: Optional[Dict[str, Any]]):
        self.path = path
        self._handle = handle
        # the holder a dead process left in the lock file, when this lock replaced it
        self.taken_over = taken_over

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.seek(0)
            self._handle.truncate()  # an empty lock file: released cleanly
            self._handle.flush()
        except OSError:
            pass
        self._handle.close()  # closing drops the flock
        self._handle = None

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def describe_holder(holder: Optional[Dict[str, Any]]) -> str:
    if not holder:
        return "an unknown process"
    since = holder.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{when} ({holder.get('command', '?')})"


def _command() -> str:
    """What this process is, for the refusal another one prints: ``ganbench trial ...``."""
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if program in ("__main__.py", "ganbench"):
        program = "ganbench"
    return " ".join([program] + sys.argv[1:4])[:200]


def _read_holder(handle: Any) -> Optional[Dict[str, Any]]:
    try:
        handle.seek(0)
        text = handle.read(4096)
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def acquire(path: os.PathLike, field: str, what: str, wait_s: float = 0.0) -> FileLock:
    """Lock ``path`` (created with its folder) for this process.

    ``wait_s`` = 0 refuses at once when another process holds it; a positive value waits
    that long first (a restarted Ray actor waiting for a stale one to exit). The refusal
    is a LockedError naming ``field`` (e.g. ``--out``), the folder and the holder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")
    except OSError as err:
        raise ConfigError(field, str(path.parent), f"a folder this process may write ({err.strerror})") from None
    if fcntl is None:
        return FileLock(path, handle, None)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() >= deadline:
                holder = _read_holder(handle)
                handle.close()
                raise LockedError(field, str(path.parent), f"{what} that no other process is writing: it is held "
                                  f"by {describe_holder(holder)}; wait for it to finish or stop it, then rerun "
                                  "(a crashed holder's lock is taken over automatically)") from None
            time.sleep(0.2)
    previous = _read_holder(handle)
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "command": _command()}
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(mine))
    handle.flush()
    stale = previous if previous and previous.get("pid") != os.getpid() else None
    return FileLock(path, handle, stale)


@contextmanager
def hold(path: os.PathLike) -> Iterator[None]:
    """Block until ``path`` is locked, for the duration of the block (short critical
    sections such as filling a shared cache entry)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        if fcntl is None:
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
