"""Exclusive locks on results folders (POSIX ``flock``), the one place ganbench takes them.

A trial's folder is written by one process at a time, whichever entry point started it
(``ganbench trial``, ``pretrain``, a study's Ray actor): :func:`acquire` takes the lock
without waiting by default and refuses with a :class:`LockedError` (exit 2) that names
the holder's host and pid from the lock file. The operating system drops the lock of a
process that dies, however it dies, so a stale lock is taken over by the next run; the
holder it names is then reported as taken over. Locks are for POSIX filesystems (local
disks, NFS with working locks).

**On object storage** there are no locks: a record there is guarded by a *lease* object
(:class:`Lease`) beside the local flock of its staging copy. The writer puts its host,
pid and a heartbeat time, renews it every ``LEASE_RENEW_S`` from a thread while it lives
and deletes it when it releases. Another process refuses (or waits) while the heartbeat is
younger than ``LEASE_TTL_S``, and takes a lease over once it is older — at once when the
holder is a dead pid on its own host. A lease is advisory, not a mutex: two processes that
read an empty lease in the same instant could both write theirs; the later read-back
(``LEASE_CONFIRM_S``) catches all but the closest races. Nodes' clocks must agree to well
within ``LEASE_TTL_S`` (NTP). Within a study Ray Tune runs one actor per trial anyway; the
lease catches a second process on the same prefix (a second driver, a stray ``ganbench
trial``) and a stale actor of a restarted trial.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from harness.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no locks; atomic renames still keep every file whole
    fcntl = None  # type: ignore[assignment]


class LockedError(ConfigError):
    """The folder is held by another live process."""


LEASE_TTL_S = 60.0
LEASE_RENEW_S = 15.0
LEASE_CONFIRM_S = 0.3


class FileLock:
    """A held lock; :meth:`release` (or process exit) frees it."""

    def __init__(self, path: Path, handle: Any, taken_over: Optional[Dict[str, Any]]):
        self.path = path
        self._handle = handle
        # the holder a dead process left in the lock file, when this lock replaced it
        self.taken_over = taken_over
        self.lease: Optional["Lease"] = None

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
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


def _refusal(field: str, where: str, what: str, holder: Optional[Dict[str, Any]]) -> LockedError:
    return LockedError(field, where, f"{what} that no other process is writing: it is held by "
                       f"{describe_holder(holder)}; wait for it to finish or stop it, then rerun (a crashed "
                       "holder's lock is taken over automatically)")


def acquire(path: os.PathLike, field: str, what: str, wait_s: float = 0.0,
            lease: Optional[Tuple[Any, str]] = None) -> FileLock:
    """Lock ``path`` (created with its folder) for this process.

    ``wait_s`` = 0 refuses at once when another process holds it; a positive value waits
    that long first (a restarted Ray actor waiting for a stale one to exit). The refusal
    is a LockedError naming ``field`` (e.g. ``--out``), the folder and the holder.
    ``lease`` = (``harness.storage.Remote``, key): also take that record's lease on object
    storage (:class:`Lease`), waiting the same ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    lock = _acquire_flock(Path(path), field, what, wait_s)
    if lease is None:
        return lock
    try:
        lock.lease = Lease.take(lease[0], lease[1], field, what, max(0.0, deadline - time.monotonic()))
    except BaseException:
        lock.release()
        raise
    if lock.lease.taken_over:
        lock.taken_over = lock.lease.taken_over
    return lock


def _acquire_flock(path: Path, field: str, what: str, wait_s: float) -> FileLock:
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
                raise _refusal(field, str(path.parent), what, holder) from None
            time.sleep(0.2)
    previous = _read_holder(handle)
    mine = _me()
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(mine))
    handle.flush()
    stale = previous if previous and previous.get("pid") != os.getpid() else None
    return FileLock(path, handle, stale)


def _me() -> Dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "command": _command()}


def _dead_here(holder: Dict[str, Any]) -> bool:
    """Whether ``holder`` is a process of this host that no longer runs."""
    from harness.files import _pid_alive

    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() \
        and not _pid_alive(pid)


class Lease:
    """The writer's lease on a record on object storage (see the module's docstring)."""

    def __init__(self, remote: Any, key: str, holder: Dict[str, Any], taken_over: Optional[Dict[str, Any]]):
        self.remote, self.key, self.holder, self.taken_over = remote, key, holder, taken_over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"ganbench-lease {key}", daemon=True)
        self._thread.start()

    @classmethod
    def take(cls, remote: Any, key: str, field: str, what: str, wait_s: float = 0.0) -> "Lease":
        deadline = time.monotonic() + wait_s
        mine = dict(_me(), token=uuid.uuid4().hex)
        while True:
            current = cls.read(remote, key)
            ours = current is not None and current.get("host") == mine["host"] and current.get("pid") == mine["pid"]
            live = current is not None and not ours and not cls.expired(current)
            if not live:
                mine["heartbeat"] = time.time()
                remote.put_bytes(key, json.dumps(mine).encode())
                time.sleep(LEASE_CONFIRM_S)
                back = cls.read(remote, key)
                if back is not None and back.get("token") == mine["token"]:
                    return cls(remote, key, mine, current)
                current = back
            if time.monotonic() >= deadline:
                raise _refusal(field, remote.uri, what, current)
            time.sleep(min(2.0, max(0.2, deadline - time.monotonic())))

    @staticmethod
    def read(remote: Any, key: str) -> Optional[Dict[str, Any]]:
        data = remote.get_bytes(key)
        try:
            holder = json.loads(data) if data else None
        except ValueError:
            return None
        return holder if isinstance(holder, dict) else None

    @staticmethod
    def expired(holder: Dict[str, Any]) -> bool:
        beat = holder.get("heartbeat")
        if not isinstance(beat, (int, float)) or time.time() - beat > LEASE_TTL_S:
            return True
        return _dead_here(holder)

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            try:
                self.remote.put_bytes(self.key, json.dumps(dict(self.holder, heartbeat=time.time())).encode())
            except Exception:  # noqa: BLE001 - a missed renewal only shortens the lease
                pass

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            current = self.read(self.remote, self.key)
            if current is not None and current.get("token") == self.holder["token"]:
                self.remote.delete(self.key)
        except Exception:  # noqa: BLE001 - an unreleased lease expires on its own
            pass


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
