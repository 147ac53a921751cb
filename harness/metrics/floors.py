"""The real-vs-real floor of a metric: what it reads when the "generated" set is real data.

With ~100 training images a Fréchet distance is dominated by small-n bias: two halves of
the same dataset already sit far apart. The floor makes that visible: the reference set
is split into two random halves (``splits`` times, seeds ``seed .. seed + splits - 1``),
one half is the reference and ``n = min(the protocol's n, half the set)`` images of the
other play the generated set; every metric is computed as in a trial (same code, same
protocol) and the mean, std and per-split values are kept. A generator can only be
judged against this number: a value at the floor is as good as real data looks at this
n; the share of the gap from a baseline to the floor says how much of the possible
improvement a configuration made.

Floors are cached under ``$GANBENCH_CACHE/floors`` by dataset fingerprint, metrics,
options, n, splits and seed (and computed again when the file is missing or unreadable).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch

from harness.data.cache import cache_dir
from harness.errors import ConfigError
from harness.interfaces import EvalContext
from harness.metrics import check_sizes, evaluate
from harness.files import atomic_write_json

FLOOR_VERSION = 1


def batches_of(images: torch.Tensor, batch_size: int, dev: torch.device) -> Callable[[int], Iterator[torch.Tensor]]:
    """A generator function over the images themselves (a dataset as the fake set)."""
    def generate(count: int) -> Iterator[torch.Tensor]:
        for i in range(0, min(count, images.shape[0]), batch_size):
            yield images[i:min(i + batch_size, count)].to(dev)
    return generate


def floor_key(fingerprint: str, names: List[str], options: Dict[str, Any], n: int, splits: int, seed: int) -> str:
    text = json.dumps({"v": FLOOR_VERSION, "fingerprint": fingerprint, "metrics": list(names),
                       "options": options, "n": n, "splits": splits, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def real_floor(images: torch.Tensor, fingerprint: str, names: List[str], n: Optional[int] = None, splits: int = 5,
               seed: int = 0, device: torch.device = torch.device("cpu"), batch_size: int = 100,
               backend: Optional[str] = None, options: Optional[Dict[str, Any]] = None,
               use_cache: bool = True) -> Dict[str, Any]:
    """The floor of ``names`` on ``images`` (N x C x H x W in [-1, 1]): ``values`` (the
    mean over splits, by value key, the shape ``ganbench metric --json`` prints),
    ``floor`` (mean, std, values per key), ``protocol``, ``higher_is_better``, ``n``,
    ``splits``."""
    options = dict(options or {})
    half = int(images.shape[0]) // 2
    n_eff = min(int(n or half), half)
    if splits < 1:
        raise ConfigError("--splits", splits, "an integer >= 1")
    check_sizes(names, n_eff, half, options, fake_path="the floor's n (at most half the reference set)",
                real_path="half the reference set")
    path = cache_dir() / "floors" / f"{floor_key(fingerprint, names, options, n_eff, splits, seed)}.json"
    if use_cache and fingerprint and path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # unreadable: computed again and replaced
    dev = torch.device(device)
    per_key: Dict[str, List[float]] = {}
    first: Dict[str, Any] = {}
    for s in range(splits):
        order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed + s))
        reference, other = images[order[:half]], images[order[half:2 * half]][:n_eff]
        # no dataset fingerprint: a half's features must not land in the full set's feature cache
        ctx = EvalContext(real=reference.to(dev), generate=batches_of(other, batch_size, dev), n_fake=n_eff,
                          device=dev, seed=seed, feature_backend=backend, options=options,
                          dataset_fingerprint="")
        result = evaluate(names, ctx)
        first = first or result
        for key, value in result["values"].items():
            per_key.setdefault(key, []).append(float(value))
    floor = {key: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                   "values": v} for key, v in per_key.items()}
    protocol = {name: {**proto, "reference": fingerprint, "floor": {"splits": splits, "n": n_eff,
                                                                    "reference_half": half, "seed": seed}}
                for name, proto in first["protocol"].items()}
    out = {"values": {k: f["mean"] for k, f in floor.items()}, "floor": floor, "protocol": protocol,
           "higher_is_better": first["higher_is_better"], "metric_of": first["metric_of"],
           "environment": first["environment"], "n": n_eff, "splits": splits, "fingerprint": fingerprint}
    if fingerprint:
        atomic_write_json(path, out)
    return out
