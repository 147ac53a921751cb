"""Quality metrics, registered in ``harness.registry.METRICS``; see each module."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List

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


_TF32_SWITCHES = (("cuda", "matmul"), ("cudnn", "conv"))


@contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Evaluate in true float32 on CUDA: TF32 matmuls/convolutions and autocast off, the
    caller's settings restored afterwards (training may use them; metrics must not, or
    the same generator scores differently on an A100 than on a V100)."""
    if torch.device(device).type != "cuda":
        yield
        return
    saved = []
    for backend, kind in _TF32_SWITCHES:
        node = getattr(getattr(torch.backends, backend), kind)
        if hasattr(node, "fp32_precision"):  # torch >= 2.9
            saved.append((node, "fp32_precision", node.fp32_precision))
            node.fp32_precision = "ieee"
        else:
            flag_owner = torch.backends.cuda.matmul if backend == "cuda" else torch.backends.cudnn
            saved.append((flag_owner, "allow_tf32", flag_owner.allow_tf32))
            flag_owner.allow_tf32 = False
    try:
        with torch.autocast(device_type="cuda", enabled=False):
            yield
    finally:
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)


def evaluate(names: List[str], ctx: EvalContext) -> Dict[str, Any]:
    """Compute the named metrics; return their values, protocols, directions and the
    environment that computed them (feature backend: not part of the protocol)."""
    values: Dict[str, float] = {}
    protocol: Dict[str, Any] = {}
    higher: Dict[str, bool] = {}
    environment: Dict[str, Any] = {}
    info: Dict[str, Any] = {}
    ctx.memo = {}  # fakes are drawn once per evaluation and shared by its metrics
    with full_precision(ctx.device):
        for name in names:
            metric = METRICS.build(name, None, "eval.metrics")
            with torch.no_grad():
                result = metric.compute(ctx)
            values.update({k: float(v) for k, v in result.items()})
            higher.update({k: bool(metric.higher_is_better) for k in result})
            protocol[name] = {"n_fake": ctx.n_fake, "n_real": int(ctx.real.shape[0]),
                              "reference": ctx.dataset_fingerprint, "seed": ctx.seed, **metric.protocol()}
            environment.update(metric.environment())
            info[name] = metric.info(list(result))
    return {"values": values, "protocol": protocol, "higher_is_better": higher, "environment": environment,
            "info": info}
