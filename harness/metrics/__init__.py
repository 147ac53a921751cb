"""Quality metrics, registered in ``harness.registry.METRICS``; see each module."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from harness.errors import ConfigError
from harness.interfaces import EvalContext
from harness.precision import full_precision
from harness.registry import METRICS


def prepare(names: List[str], device: torch.device) -> None:
    """Load what the metrics need (verified weights) now, so a missing or wrong file fails
    before training starts, not at the first evaluation."""
    for name in names:
        hook = getattr(METRICS.get(name, "eval.metrics").obj, "prepare", None)
        if hook is not None:
            hook(device)


def build(name: str, options: Optional[Dict[str, Any]] = None, path: str = "eval.metric_options") -> Any:
    """The metric ``name`` with its validated options (``eval.metric_options.<name>``)."""
    return METRICS.build(name, (options or {}).get(name), f"{path}.{name}")


def value_keys(names: List[str], options: Optional[Dict[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """Every value key the named metrics report: ``{key: {"metric": name, "higher_is_better": bool}}``
    (a key reported by two of them is an error: rows could not say whose it is)."""
    keys: Dict[str, Dict[str, Any]] = {}
    for name in names:
        for key, higher in build(name, options).keys().items():
            if key in keys:
                raise ConfigError("eval.metrics", names, f"metrics whose value keys differ ({key!r} is reported "
                                  f"by {keys[key]['metric']} and {name})")
            keys[key] = {"metric": name, "higher_is_better": bool(higher)}
    return keys


def check_sizes(names: List[str], n_fake: int, n_real: Optional[int], options: Optional[Dict[str, Any]] = None,
                fake_path: str = "eval.n_samples", real_path: str = "the reference set") -> None:
    """Refuse, before anything is computed, a metric whose options need more generated or
    real images than the evaluation has (``n_real`` None: not known yet)."""
    _refuse_small({name: build(name, options) for name in names}, n_fake, n_real, fake_path, real_path)


def _refuse_small(metrics: Dict[str, Any], n_fake: int, n_real: Optional[int], fake_path: str,
                  real_path: str) -> None:
    for name, metric in metrics.items():
        need = metric.minimum_sizes()
        for side, have, path in (("n_fake", n_fake, fake_path), ("n_real", n_real, real_path)):
            least, why = need[side]
            if have is not None and have < least:
                what = "generated" if side == "n_fake" else "real"
                raise ConfigError(path, have, f"at least {least} {what} images for {name} ({why})")


def evaluate(names: List[str], ctx: EvalContext) -> Dict[str, Any]:
    """Compute the named metrics; return their values, protocols, each value key's
    direction and metric, the environment that computed them (feature backend: not part
    of the protocol) and the artifacts they left (closest generated/training pairs)."""
    ref = ctx.reference_stats
    n_real = (ref["stats"].n or None) if ref else int(ctx.real.shape[0])
    built = {name: build(name, ctx.options) for name in names}
    _refuse_small(built, ctx.n_fake, n_real, "eval.n_samples", "the reference set")
    values: Dict[str, float] = {}
    protocol: Dict[str, Any] = {}
    higher: Dict[str, bool] = {}
    metric_of: Dict[str, str] = {}
    environment: Dict[str, Any] = {}
    info: Dict[str, Any] = {}
    ctx.memo = {}  # fakes are drawn once per evaluation and shared by its metrics
    ctx.artifacts = {}
    with full_precision(ctx.device):
        for name, metric in built.items():
            declared = metric.keys()
            with torch.no_grad():
                result = metric.compute(ctx)
            if set(result) != set(declared):
                raise RuntimeError(f"metric {name} reported {sorted(result)} but declares {sorted(declared)}")
            values.update({k: float(v) for k, v in result.items()})
            higher.update({k: bool(declared[k]) for k in result})
            metric_of.update({k: name for k in result})
            # the metric's own protocol records its effective options (defaults included)
            protocol[name] = {"n_fake": ctx.n_fake, "n_real": n_real,
                              "reference": ctx.dataset_fingerprint, "seed": ctx.seed, "truncation": ctx.truncation,
                              **({"sampling": dict(ctx.sampling)} if ctx.sampling else {}), **metric.protocol()}
            environment.update(metric.environment())
            info[name] = {**metric.info(list(result)), "directions": {k: bool(declared[k]) for k in result}}
    return {"values": values, "protocol": protocol, "higher_is_better": higher, "metric_of": metric_of,
            "environment": environment, "info": info, "artifacts": dict(ctx.artifacts)}
