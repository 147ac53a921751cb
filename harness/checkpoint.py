"""Atomic, checksummed trial checkpoints.

``checkpoints/ckpt-<iteration>.pt`` holds the payload (torch.save of plain tensors,
numbers, strings, lists and dicts only, so it loads with ``weights_only=True``);
``ckpt-<iteration>.json`` beside it is written after the payload is in place and
holds its sha256 and size. A checkpoint counts only if its manifest exists and the
payload's checksum matches, so a kill at any moment leaves either the previous good
checkpoint or the new one, never a half-written file that a resume would trust.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from harness.errors import CheckpointError
from harness.store import atomic_write_bytes, atomic_write_json

_NAME = re.compile(r"^ckpt-(\d+)\.json$")


def save(directory: Path, iteration: int, payload: Dict[str, Any], keep: int = 2) -> Path:
    directory = Path(directory)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    pt = directory / f"ckpt-{iteration:08d}.pt"
    atomic_write_bytes(pt, data)
    atomic_write_json(
        directory / f"ckpt-{iteration:08d}.json",
        {"iteration": iteration, "file": pt.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
    )
    _prune(directory, keep)
    return pt


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
    if len(data) != meta.get("bytes") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{pt}: checksum mismatch (truncated or corrupted checkpoint)")
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)


def load_latest(directory: Path, map_location: Any = "cpu") -> Optional[Dict[str, Any]]:
    """The newest checkpoint that verifies; older ones are tried if a newer one is bad."""
    for _, manifest in reversed(_manifests(directory)):
        try:
            return load_file(manifest.with_suffix(".pt"), manifest, map_location)
        except CheckpointError:
            continue
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
