"""Quality metrics, registered in ``harness.registry.METRICS``; see each module."""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from harness.interfaces import EvalContext
from harness.registry import METRICS


def prepare(names: List[str], device: torch.device) -> None:
    """Load what the metrics need (verified weights) now, so a missing or wrong file fails
    before training starts, not at the first evaluation."""
    for name in names:
        hook = getattr(METRICS.get(name, "eval.metrics").obj, "prepare", None)
        if hook is not None:
            hook(device)


def evaluate(names: List[str], ctx: EvalContext) -> Dict[str, Any]:
    """Compute the named metrics; return their values, protocols and directions."""
    values: Dict[str, float] = {}
    protocol: Dict[str, Any] = {}
    higher: Dict[str, bool] = {}
    ctx.memo = {}  # fakes are drawn once per evaluation and shared by its metrics
    for name in names:
        metric = METRICS.build(name, None, "eval.metrics")
        with torch.no_grad():
            result = metric.compute(ctx)
        values.update({k: float(v) for k, v in result.items()})
        higher.update({k: bool(metric.higher_is_better) for k in result})
        protocol[name] = {"n_fake": ctx.n_fake, "n_real": int(ctx.real.shape[0]),
                          "reference": ctx.dataset_fingerprint, "seed": ctx.seed, **metric.protocol()}
    return {"values": values, "protocol": protocol, "higher_is_better": higher}
