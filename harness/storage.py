"""Where results live: a local folder, or object storage through ``pyarrow.fs``.

``--results`` is a path (``results``, ``/shared/results``) or a URI that ``pyarrow.fs``
resolves — the layer Ray Tune itself stores experiments through: ``s3://bucket/prefix``,
``gs://bucket/prefix``, ``hdfs://...``. Endpoint and credentials come from the variables
the S3 clients read (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``; for
``gs://`` Google's application-default credentials).

Object storage has no append, no rename and no locks: a :class:`Remote` offers whole
objects only (put, get, list, delete; a put is atomic: a reader sees the old object or the
new one, and an upload killed midway leaves none). The record classes of
:mod:`harness.store` own what is written where — they keep a local *staging* copy of the
study (:func:`staging_dir`, in the cache, never the results folder) and publish every
file they write; this module knows nothing of their layout.

A location that cannot be reached, read or written — no such bucket, refused or missing
credentials, an endpoint that does not answer, a read-only folder — is one
:class:`ConfigError` naming it (:meth:`Remote.check`), before anything is scheduled.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from harness.errors import ConfigError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Schemes that name a local path; everything else with "://" is resolved by pyarrow.fs.
LOCAL_SCHEMES = ("file",)
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
READ_ATTEMPTS = 5


def is_uri(results: Any) -> bool:
    """Whether ``results`` names object storage (or another pyarrow filesystem) rather
    than a local folder."""
    m = _SCHEME.match(str(results))
    return bool(m) and m.group(1).lower() not in LOCAL_SCHEMES


def local_path(results: Any) -> Path:
    """The folder a local ``results`` names (a path, or a ``file://`` URI)."""
    text = str(results)
    return Path(text[len("file://"):] if text.lower().startswith("file://") else text)


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/")] + [p.strip("/") for p in parts if p])


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    mtime: float  # seconds since the epoch (0 when the store gives none)


class Remote:
    """Whole objects under one prefix of a ``pyarrow.fs`` filesystem (keys relative to it)."""

    def __init__(self, uri: str, fs: Any = None, base: Optional[str] = None):
        self.uri = uri.rstrip("/")
        if fs is None:
            fs, base = filesystem(self.uri)
        self.fs, self.base = fs, (base or "").rstrip("/")

    def __repr__(self) -> str:
        return f"Remote({self.uri!r})"

    def __reduce__(self):  # Ray ships it to workers: they rebuild the filesystem from their own env
        return (Remote, (self.uri,))

    def child(self, *parts: str) -> "Remote":
        rel = "/".join(p.strip("/") for p in parts if p)
        return Remote(join(self.uri, rel), self.fs, f"{self.base}/{rel}")

    def _key(self, rel: str) -> str:
        return f"{self.base}/{rel.strip('/')}" if rel else self.base

    # -- whole objects -------------------------------------------------------------------
    def put_bytes(self, rel: str, data: bytes) -> None:
        with self._call("write", rel):
            with self.fs.open_output_stream(self._key(rel)) as fh:
                fh.write(data)

    def put_file(self, rel: str, local: os.PathLike) -> None:
        with open(local, "rb") as src, self._call("write", rel):
            with self.fs.open_output_stream(self._key(rel)) as fh:
                for chunk in iter(lambda: src.read(1 << 22), b""):
                    fh.write(chunk)

    def get_bytes(self, rel: str) -> Optional[bytes]:
        """The object's bytes (one version of it, whole), or None when there is none."""
        return self._read_whole(rel, lambda fh: fh.read(), None)

    def download(self, rel: str, local: os.PathLike) -> bool:
        """Copy the object to ``local`` atomically; False when there is no such object."""
        from harness.files import atomic_target

        def copy(fh, out) -> bool:
            out.seek(0)
            out.truncate()
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                out.write(chunk)
            return True

        try:
            with atomic_target(Path(local)) as tmp, open(tmp, "wb") as out:
                if not self._read_whole(rel, lambda fh: copy(fh, out), False):
                    raise FileNotFoundError(rel)
        except FileNotFoundError:
            return False
        return True

    def _read_whole(self, rel: str, read: Any, missing: Any) -> Any:
        """``read(stream)`` of one version of the object; ``missing`` when there is none.

        A pyarrow object-store stream learns the object's size from a HEAD when it opens
        and then fetches byte ranges, so an overwrite in between hands back a prefix of the
        new version. The version (ETag, else size and time) is asked for again after the
        read; a changed one is read again, READ_ATTEMPTS times at most."""
        key = self._key(rel)
        for attempt in range(READ_ATTEMPTS):
            try:
                with self._call("read", rel), self.fs.open_input_stream(key) as fh:
                    before, result = _version(fh), read(fh)
            except FileNotFoundError:
                return missing
            try:
                with self._call("read", rel), self.fs.open_input_stream(key) as fh:
                    after = _version(fh)
            except FileNotFoundError:
                after = None if before is None else ()
            if before is None or before == after:
                return result
            time.sleep(0.02 * (attempt + 1))
        raise ConfigError("--results", join(self.uri, rel), f"an object that stays unchanged while it is read "
                          f"(it was rewritten during each of {READ_ATTEMPTS} reads)")

    def info(self, rel: str) -> Optional[ObjectInfo]:
        import pyarrow.fs as pafs

        with self._call("read", rel):
            found = self.fs.get_file_info(self._key(rel))
        if found.type != pafs.FileType.File:
            return None
        return ObjectInfo(int(found.size or 0), _seconds(found.mtime))

    def list(self, rel: str = "") -> Dict[str, ObjectInfo]:
        """Every object under ``rel`` (recursively): key relative to this prefix -> info."""
        import pyarrow.fs as pafs

        base = self._key(rel)
        with self._call("list", rel):
            found = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        out = {}
        for f in found:
            if f.type == pafs.FileType.File:
                key = f.path[len(self.base):].lstrip("/") if self.base else f.path
                out[key] = ObjectInfo(int(f.size or 0), _seconds(f.mtime))
        return out

    def delete(self, rel: str) -> None:
        try:
            with self._call("delete", rel):
                self.fs.delete_file(self._key(rel))
        except FileNotFoundError:
            pass

    def _call(self, action: str, rel: str):
        return _translated(self, action, rel)

    # -- the up-front check ----------------------------------------------------------------
    def check(self, field: str = "--results", write: bool = True) -> None:
        """Refuse, naming this location, unless this process can list, write, read back and
        delete an object here (``write``), or at least list it."""
        self.list("")
        if not write:
            return
        probe = f".ganbench-probe/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        token = uuid.uuid4().hex.encode()
        try:
            self.put_bytes(probe, token)
            back = self.get_bytes(probe)
            self.delete(probe)
        except ConfigError as err:
            raise ConfigError(field, self.uri, err.expected) from None
        if back != token:
            raise ConfigError(field, self.uri, "storage that returns what was written to it (a probe object read "
                              "back differently)")


@contextmanager
def _translated(remote: Remote, action: str, rel: str) -> Iterator[None]:
    """Turn a pyarrow/OS error of one call into a ConfigError that names the location (a
    missing object stays FileNotFoundError)."""
    try:
        yield
    except (FileNotFoundError, ConfigError):
        raise
    except OSError as err:
        if _not_found(err):
            raise FileNotFoundError(str(err)) from None
        raise ConfigError("--results", join(remote.uri, rel),
                          f"storage this process can {action} ({explain(err, remote.uri)})") from None


def pull_into(remote: "Remote", objects: Dict[str, ObjectInfo], root: Path, rows: Dict[str, str],
              skip: Iterable[str] = (), lease: str = "", rewritten: Tuple[str, ...] = ()) -> None:
    """Copy ``objects`` (``remote.list()``) into the local folder ``root``: row objects
    (``<folder>/<name>.json`` for each ``folder`` of ``rows``, also inside subfolders such
    as ``trials/<id>/``) are joined, in name order, into the JSONL file ``rows`` names;
    other objects are downloaded when the local copy is missing, of another size, older, or
    a small record file that may have been rewritten in place. Keys with a folder named in
    ``skip`` (and leases and probes) are left out."""
    skip = set(skip) | {".ganbench-probe"}
    joined: Dict[Path, List[str]] = {}
    for key in sorted(objects):
        parts = key.split("/")
        if skip.intersection(parts[:-1]) or parts[-1] == lease:
            continue
        if len(parts) >= 2 and parts[-2] in rows:
            joined.setdefault(root.joinpath(*parts[:-2], rows[parts[-2]]), []).append(key)
            continue
        local = root.joinpath(*parts)
        info = objects[key]
        try:
            st = local.stat()
            fresh = st.st_size == info.size and (not info.mtime or st.st_mtime >= info.mtime)
            if fresh and not (rewritten and key.endswith(rewritten)):
                continue
        except OSError:
            pass
        remote.download(key, local)
    for target, keys in joined.items():
        _join_rows(remote, objects, keys, target)


def _join_rows(remote: "Remote", objects: Dict[str, ObjectInfo], keys: List[str], target: Path) -> None:
    """Write the row objects ``keys`` (sorted) joined into ``target``. Rows are fetched
    once: an index beside ``target`` remembers which rows it holds (size, mtime), and when
    they are all still on the store unchanged, only the rows after them are fetched."""
    from harness.files import atomic_write_json, atomic_write_text, read_json

    listing = {k: [objects[k].size, objects[k].mtime] for k in keys}
    index = target.with_name(f".{target.name}.rows.json")
    known = read_json(index)
    text = ""
    new = keys
    if isinstance(known, dict) and known and keys[:len(known)] == list(known) and target.is_file() \
            and all(listing[k] == known[k] for k in known):
        text = target.read_text(encoding="utf-8")
        if text.count("\n") == len(known):  # not appended to or rewritten here since
            new = keys[len(known):]
            if not new:
                return
        else:
            text = ""
    parts = [text]
    for key in new:
        data = remote.get_bytes(key)
        if data is not None and data.endswith(b"\n"):
            parts.append(data.decode("utf-8"))
    atomic_write_text(target, "".join(parts))
    atomic_write_json(index, listing)


# record files rewritten in place (same name, maybe the same size): always fetched again
_REWRITTEN = (".json", ".yaml", ".csv", ".html", ".done")


def _not_found(err: OSError) -> bool:
    text = str(err)
    return ("NoSuchKey" in text or "NO_SUCH_KEY" in text or "Path does not exist" in text) and "BUCKET" not in text


def explain(err: BaseException, uri: str) -> str:
    """One line saying why a pyarrow filesystem call failed, and what to set."""
    text = str(err)
    bucket = bucket_of(uri)
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return f"bucket '{bucket}' does not exist; create it first (ganbench creates no buckets)"
    if "NETWORK_CONNECTION" in text or "curlCode" in text or "Could not connect" in text \
            or "Connection refused" in text or "timed out" in text.lower():
        endpoint = endpoint_url() or "the default endpoint"
        return f"cannot connect to {endpoint}; check AWS_ENDPOINT_URL and the network"
    if uri.lower().startswith(("s3://", "s3a://")) and not s3_credentials_named():
        return ("no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE or a "
                "~/.aws/credentials file, or give the node a role)")
    if any(k in text for k in ("ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY_ID", "InvalidAccessKeyId",
                               "SIGNATURE_DOES_NOT_MATCH", "SignatureDoesNotMatch", "Forbidden", "403")):
        return ("the credentials were refused (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or "
                "AWS_PROFILE, or the node's role, must allow reading and writing this prefix)")
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first[:300]


def s3_credentials_named() -> bool:
    """Whether the environment names S3 credentials the way the AWS clients look for them
    (keys, a profile, a credentials or config file, a web-identity or container role); a
    node's instance role cannot be seen from here, so without one a failure says none was found."""
    env = os.environ
    if any(env.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")):
        return True
    files = (env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials", env.get("AWS_CONFIG_FILE") or "~/.aws/config")
    return any(Path(f).expanduser().is_file() for f in files)


def bucket_of(uri: str) -> str:
    rest = _SCHEME.sub("", uri, count=1)
    return rest.split("/", 1)[0]


def endpoint_url() -> Optional[str]:
    """The S3 endpoint the standard variables name (service-specific one first)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def filesystem(uri: str) -> Tuple[Any, str]:
    """(pyarrow filesystem, path inside it) of ``uri``; ConfigError when none resolves it."""
    import pyarrow.fs as pafs

    scheme = _SCHEME.match(uri)
    assert scheme, uri
    name = scheme.group(1).lower()
    if name in ("s3", "s3a"):
        rest = _SCHEME.sub("", uri, count=1)
        if not rest or rest.startswith("/"):
            raise ConfigError("--results", uri, "s3://BUCKET/PREFIX (no bucket named)")
        kwargs: Dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_S, "request_timeout": REQUEST_TIMEOUT_S,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        }
        endpoint = endpoint_url()
        if endpoint:
            kwargs["endpoint_override"] = endpoint
            kwargs["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
            if endpoint.startswith("http://"):
                kwargs["scheme"] = "http"
        try:
            return pafs.S3FileSystem(**kwargs), rest.rstrip("/")
        except (OSError, ValueError) as err:
            raise ConfigError("--results", uri, f"an S3 location this process can use ({explain(err, uri)})") from None
    try:
        return pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError("--results", uri, "a local folder or a URI pyarrow.fs resolves (s3://BUCKET/PREFIX, "
                          f"gs://BUCKET/PREFIX, hdfs://...): {str(err).splitlines()[0][:200]}") from None


def _version(stream: Any) -> Any:
    """What tells one version of an object from another in an open stream's metadata:
    the ETag (S3, GCS), else size and modification time; None where there is neither."""
    meta = dict(stream.metadata() or {})
    tag = meta.get("ETag") or meta.get(b"ETag")
    if tag:
        return tag
    sized = tuple(meta.get(k) for k in ("Content-Length", "Last-Modified"))
    return sized if any(sized) else None


def _seconds(mtime: Any) -> float:
    if mtime is None:
        return 0.0
    if hasattr(mtime, "timestamp"):
        return float(mtime.timestamp())
    return float(mtime) / 1e9  # pyarrow gives ns for some filesystems


def staging_dir(uri: str) -> Path:
    """The local staging copy of the results at ``uri``: ``<cache>/staging/<hash>/``.

    ``$GANBENCH_STAGING`` moves it (node-local scratch on a cluster)."""
    from harness.data.cache import cache_dir

    root = os.environ.get("GANBENCH_STAGING")
    base = Path(root).expanduser() if root else cache_dir() / "staging"
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    return base / digest
