"""Reference statistics as ``.npz`` files (mu, sigma), in the layout pytorch-fid and
clean-fid read and write: arrays ``mu`` (d,) and ``sigma`` (d, d).

ganbench's own files add 0-d string arrays naming what computed them (``extractor``,
``pipeline``, ``weights_sha256``, ``n``, ``reference``); a file that names another
extractor, pipeline or weights than the metric's is refused. Files from the other tools
carry no such names: they are accepted when their dimension fits the metric's extractor,
and the protocol records ``reference_pipeline: unverified`` (a pytorch-fid file was made
with the ``legacy_pytorch`` pipeline, clean-fid's with ``clean``: use the matching metric).
Loaded with ``allow_pickle=False``; the arrays are checked (shape, dtype, finite) before use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np

from harness.errors import ConfigError
from harness.metrics.stats import GaussianStats
from harness.files import atomic_target, sha256_file

META = ("extractor", "pipeline", "weights_sha256", "n", "reference")
MAX_BYTES = 512 * 2**20  # a 2,048-d float64 sigma is 32 MiB; refuse anything far larger unread


def save_stats(path: Path, stats: GaussianStats, protocol: Dict[str, Any], reference: str) -> Path:
    """Write ``stats`` with the extractor's protocol, atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError("--save-stats", str(path), "a path ending in .npz")
    meta = {"extractor": protocol["extractor"], "pipeline": protocol["pipeline"],
            "weights_sha256": protocol["weights_sha256"], "n": str(stats.n), "reference": reference}
    with atomic_target(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, mu=stats.mu.astype(np.float64), sigma=stats.sigma.astype(np.float64),
                 **{k: np.array(v) for k, v in meta.items()})
    return path


def load_stats(path: Path, metric: str, protocol: Dict[str, Any]) -> Dict[str, Any]:
    """``{"stats": GaussianStats, "meta": {...}, "verified": bool, "sha256": str}`` of a
    .npz file, checked against ``metric``'s extractor ``protocol`` (extractor, pipeline,
    weights_sha256, dim)."""
    path = Path(path)
    field = f"--real {path}"
    if not path.is_file():
        raise ConfigError("--real", str(path), "an existing .npz statistics file")
    if path.stat().st_size > MAX_BYTES:
        raise ConfigError("--real", str(path), f"a statistics file under {MAX_BYTES // 2**20} MiB")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ConfigError("--real", str(path), f"a readable .npz file with arrays mu and sigma ({err})") from None
    if "mu" not in arrays or "sigma" not in arrays:
        raise ConfigError(field, sorted(arrays), "arrays named mu and sigma (pytorch-fid / clean-fid layout)")
    mu, sigma = arrays["mu"], arrays["sigma"]
    d = int(protocol["dim"])
    for name, array, shape in (("mu", mu, (d,)), ("sigma", sigma, (d, d))):
        if array.dtype.kind != "f":
            raise ConfigError(f"{field} [{name}]", str(array.dtype), "a float array (float32 or float64)")
        if array.shape != shape:
            raise ConfigError(f"{field} [{name}]", array.shape, f"shape {shape} for {metric} "
                              f"({protocol['extractor']} features are {d}-d)")
        if not np.isfinite(array).all():
            raise ConfigError(f"{field} [{name}]", "non-finite values", "finite values")
    if not np.allclose(sigma, sigma.T, rtol=1e-5, atol=1e-8):
        raise ConfigError(f"{field} [sigma]", "an asymmetric matrix", "a covariance (symmetric) matrix")
    meta = {k: str(arrays[k]) for k in META if k in arrays}
    for key in ("extractor", "pipeline", "weights_sha256"):
        if key in meta and meta[key] != str(protocol[key]):
            raise ConfigError(f"{field} [{key}]", meta[key], f"{protocol[key]} ({metric}'s {key}; statistics from "
                                                           "another extractor or pipeline do not compare)")
    n = int(meta["n"]) if meta.get("n", "").isdigit() else 0
    return {"stats": GaussianStats(mu.astype(np.float64), sigma.astype(np.float64), n), "meta": meta,
            "verified": all(k in meta for k in ("extractor", "pipeline", "weights_sha256")),
            "sha256": sha256_file(path)}
