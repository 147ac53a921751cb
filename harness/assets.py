"""The files a study's trials read besides their config: built datasets and source models.

The driver prepares them (:mod:`harness.prepare`) into its own cache and zoo. On a cluster
every node must have the same files:

- results on **object storage**: :func:`publish` uploads each file once to the study's
  ``assets/sha256/<digest>`` (content-addressed: never overwritten by other bytes), and a
  trial's actor :func:`fetch` es the ones it lacks into its node's cache and zoo, checking
  the digest; the list travels to the actors with the study's run settings and is kept in
  the study folder's ``assets.json``;
- results on a **shared folder**: nothing is copied; :func:`problems` (run on every node
  by :mod:`harness.cluster` before scheduling) says which node lacks a file or holds
  other bytes under its name.

A dataset given as an ``.hdf5`` path is the user's file: never copied, only checked on
every node like the rest.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from harness.errors import ConfigError

KINDS = ("dataset", "zoo", "file")
_VERIFIED: Dict[Tuple[str, int, int], str] = {}


def _root(kind: str) -> Optional[Path]:
    """The local folder that ``kind``'s relative paths are under (None: absolute paths)."""
    from harness.data.cache import datasets_dir
    from harness.zoo import zoo_dir

    return {"dataset": datasets_dir(), "zoo": zoo_dir()}.get(kind)


def local_path(entry: Dict[str, Any]) -> Path:
    root = _root(entry["kind"])
    return root / entry["path"] if root is not None else Path(entry["path"])


def digest(path: Path) -> str:
    """The sha256 of ``path``, remembered per (path, size, mtime) within the process."""
    from harness.files import sha256_file

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


def _entry(kind: str, path: Path) -> Dict[str, Any]:
    root = _root(kind)
    rel = path.resolve().relative_to(root.resolve()).as_posix() if root is not None else str(path.resolve())
    return {"kind": kind, "path": rel, "sha256": digest(path), "bytes": path.stat().st_size}


def collect(specs: Iterable[Any]) -> List[Dict[str, Any]]:
    """The files trials of ``specs`` (TrialSpecs) read, once each: their built datasets
    and the files of their transfer sources' zoo entries (after preparation)."""
    from harness import zoo
    from harness.data import DATASETS
    from harness.data.cache import dataset_path

    found: Dict[Tuple[str, str], Dict[str, Any]] = {}

    def add(kind: str, path: Path) -> None:
        if path.is_file():
            entry = _entry(kind, path)
            found.setdefault((entry["kind"], entry["path"]), entry)

    for spec in specs:
        ds = spec.dataset
        if ds.is_path():
            add("file", Path(ds.name))
        elif not (ds.name in DATASETS and DATASETS.get(ds.name).obj.procedural):
            add("dataset", dataset_path(ds.name, ds.resolution))
        source = getattr(spec.transfer, "source", None)
        if source:
            entry_dir = zoo.resolve(source, "transfer.source")
            inside = _inside(entry_dir, zoo.zoo_dir())
            for f in sorted(p for p in entry_dir.iterdir() if p.is_file()):
                add("zoo" if inside else "file", f)
    return list(found.values())


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def publish(entries: List[Dict[str, Any]], record: Any, out=lambda line: None) -> int:
    """Upload the dataset and zoo files of ``entries`` the study's store lacks; returns
    how many were uploaded."""
    sent = 0
    for entry in entries:
        if entry["kind"] == "file":
            continue
        key = record.asset_key(entry["sha256"])
        info = record.remote.info(key)
        if info is not None and info.size == entry["bytes"]:
            continue
        out(f"uploading {entry['kind']} {entry['path']} ({entry['bytes'] / 2**20:.1f} MiB) to {record.remote.uri}")
        record.remote.put_file(key, local_path(entry))
        sent += 1
    return sent


def fetch(entries: Iterable[Dict[str, Any]], record: Any) -> List[Path]:
    """Make this node's cache and zoo hold every dataset and zoo file of ``entries``,
    downloading from the study's store what is missing or differs; returns what was
    downloaded. A download that does not match its digest is refused (ConfigError)."""
    from harness import locks

    got = []
    for entry in entries:
        if entry["kind"] == "file":
            continue
        path = local_path(entry)
        if _matches(path, entry):
            continue
        with locks.hold(path.parent / f".{path.name}.fetch.lock"):  # one download per node
            if _matches(path, entry):
                continue
            if not record.remote.download(record.asset_key(entry["sha256"]), path):
                raise ConfigError("assets", entry["path"], f"a {entry['kind']} file uploaded to "
                                  f"{record.remote.uri} before scheduling (it is not there: rerun the study's driver)")
            if not _matches(path, entry):
                path.unlink(missing_ok=True)
                raise ConfigError("assets", entry["path"], f"the {entry['kind']} file with sha256 "
                                  f"{entry['sha256'][:16]}… (the store's copy differs)")
            got.append(path)
    return got


def _matches(path: Path, entry: Dict[str, Any]) -> bool:
    try:
        return path.stat().st_size == entry["bytes"] and digest(path) == entry["sha256"]
    except OSError:
        return False


def problems(entries: Iterable[Dict[str, Any]], record: Any = None) -> List[str]:
    """What this node lacks of ``entries``: with a store (``record.remote``), the
    uploaded copies must be readable and the node's cache writable; without one, every
    file must be here with the same bytes."""
    out = []
    for entry in entries:
        path = local_path(entry)
        if record is not None and record.remote is not None and entry["kind"] != "file":
            try:
                info = record.remote.info(record.asset_key(entry["sha256"]))
            except ConfigError as err:
                out.append(f"cannot read {record.remote.uri} ({err.expected})")
                continue
            if info is None:
                out.append(f"finds no uploaded copy of {entry['path']} in {record.remote.uri}")
            continue
        if not path.is_file():
            out.append(f"has no {entry['kind']} file {path}")
        elif not _matches(path, entry):
            out.append(f"has another {entry['kind']} file at {path} (sha256 differs from the driver's)")
    if record is not None and record.remote is not None:
        for kind in ("dataset", "zoo"):
            folder = _root(kind)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".ganbench-probe-{os.getpid()}"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as err:
                out.append(f"cannot write its {kind} cache {folder} ({err.strerror})")
    return out
