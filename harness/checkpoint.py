"""Atomic, checksummed trial checkpoints.

``checkpoints/ckpt-<iteration>.pt`` holds the payload (torch.save of plain tensors,
numbers, strings, lists and dicts only, so it loads with ``weights_only=True``);
``ckpt-<iteration>.json`` beside it is written after the payload is in place and
holds its sha256 and size. A checkpoint counts only if its manifest exists and the
payload's checksum matches, so a kill at any moment leaves either the previous good
checkpoint or the new one, never a half-written file that a resume would trust.

A bad checkpoint is never skipped silently: :func:`load_latest` warns with the file and
the reason when it falls back to an older one, and raises (exit 2, listing every file
and reason) when checkpoints exist but none loads — a trial must not quietly restart
from iteration 0 over its own series. A payload that safe loading refuses (pickled
objects beyond tensors and plain data) is reported as such; the advice torch's error
carries (to disable safe loading) is never passed on. A resume also refuses data other
than the data the trial started on (:func:`check_resumed_data`).
"""
from __future__ import annotations

import hashlib
import time
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from harness.errors import CheckpointError, ConfigError
from harness.files import atomic_write_bytes, atomic_write_json

_NAME = re.compile(r"^ckpt-(\d+)\.json$")


def save(directory: Path, iteration: int, payload: Dict[str, Any], keep: int = 2) -> Path:
    directory = Path(directory)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    pt = directory / f"ckpt-{iteration:08d}.pt"
    atomic_write_bytes(pt, data)
    atomic_write_json(
        manifest_path(pt),
        {"iteration": iteration, "file": pt.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
    )
    _prune(directory, keep)
    return pt


def manifest_path(pt: Path) -> Path:
    """The manifest that vouches for checkpoint payload ``pt``."""
    return Path(pt).with_suffix(".json")


def _manifests(directory: Path) -> List[Tuple[int, Path]]:
    found = []
    for p in Path(directory).glob("ckpt-*.json"):
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def _prune(directory: Path, keep: int) -> None:
    manifests = _manifests(directory)
    for _, manifest in manifests[:-keep] if keep > 0 else []:
        manifest.unlink(missing_ok=True)
        manifest.with_suffix(".pt").unlink(missing_ok=True)


def load_file(pt: Path, manifest: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    try:
        meta = json.loads(Path(manifest).read_text())
        data = Path(pt).read_bytes()
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{pt}: unreadable checkpoint ({err})") from None
    if not isinstance(meta, dict) or len(data) != meta.get("bytes") \
            or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{pt}: checksum mismatch (truncated or corrupted checkpoint)")
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever the payload makes the unpickler raise
        raise CheckpointError(f"{pt}: refused by safe loading (weights_only=True): {_refusal(err)}; it is not a "
                              "checkpoint ganbench wrote") from None
    if not isinstance(state, dict) or "iteration" not in state:
        raise CheckpointError(f"{pt}: not a ganbench training state (no iteration)")
    return state


def _refusal(err: Exception) -> str:
    """What the unpickler objected to, without the advice to disable safe loading."""
    m = re.search(r"unsupported global:?\s+(?:GLOBAL\s+)?([A-Za-z_][\w.]*)", str(err), re.IGNORECASE)
    if m:
        return f"it would import {m.group(1).rstrip('.')}"
    return f"{type(err).__name__} while unpickling"


def load_latest(directory: Path, map_location: Any = "cpu",
                warn: Optional[Callable[[str], None]] = None) -> Optional[Dict[str, Any]]:
    """The newest checkpoint that verifies; None when ``directory`` holds none.

    An older checkpoint is used when newer ones are bad, with a warning that names each
    bad file and why (``warn``, default :func:`warnings.warn`). When checkpoints exist
    and every one is bad, raises CheckpointError listing them all.
    """
    manifests = _manifests(directory)
    bad: List[str] = []
    for _, manifest in reversed(manifests):
        try:
            state = load_file(manifest.with_suffix(".pt"), manifest, map_location)
        except CheckpointError as err:
            bad.append(str(err))
            continue
        if bad:
            message = (f"resuming from {manifest.with_suffix('.pt').name} (iteration {state['iteration']}); newer "
                       "checkpoint(s) skipped: " + "; ".join(bad))
            (warn or (lambda m: warnings.warn(m, RuntimeWarning, stacklevel=3)))(message)
        return state
    if bad:
        raise CheckpointError(f"{directory}: none of its {len(bad)} checkpoint(s) loads, so the trial cannot resume "
                              "and is not restarted over its own results: " + "; ".join(bad) + ". Move the "
                              "checkpoints folder away to restart from iteration 0 on purpose")
    return None


def latest_manifest(directory: Path) -> Optional[Dict[str, Any]]:
    """The newest manifest (iteration, file, sha256, bytes), unverified; None if none."""
    manifests = _manifests(directory)
    if not manifests:
        return None
    try:
        return json.loads(manifests[-1][1].read_text())
    except (OSError, json.JSONDecodeError):
        return None


def latest_iteration(directory: Path) -> Optional[int]:
    manifests = _manifests(directory)
    return manifests[-1][0] if manifests else None


def check_resumed_data(record: Any, name: str, fingerprint: str, images: int, allow: bool,
                       iteration: Optional[int] = None, field: str = "dataset.name") -> None:
    """Refuse to resume ``record`` on data other than the data it started on (the
    fingerprint in its env.json), unless ``allow``: then, given the ``iteration`` it
    resumes at, the change is recorded in env.json (``dataset_changes``)."""
    env = record.read_env()
    if not isinstance(env, dict):
        return
    started = env.get("dataset_fingerprint")
    if not isinstance(started, str) or started == fingerprint:
        return
    if not allow:
        raise ConfigError(field, name, f"the data this trial started on: its images had fingerprint {started[:16]}… "
                          f"when it started and have {fingerprint[:16]}… now (the dataset was rebuilt or re-imported "
                          "since, and every metric's reference would change mid-series). Rerun with --allow-new-data "
                          "to continue on the new data (recorded in env.json), or use another --out")
    if iteration is None:
        return
    env.setdefault("dataset_changes", []).append({"iteration": iteration, "from": started, "to": fingerprint,
                                                  "images": images, "time": time.time()})
    env.update({"dataset_fingerprint": fingerprint, "dataset_images": images})
    record.write_env(env)
