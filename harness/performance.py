"""Training switches that change speed, not results: channels-last layout and torch.compile.

Both are applied after the models are built (and a transfer method has loaded its
source), before the first step. ``nn.Module.compile`` compiles in place, so state-dict
keys, checkpoints and the model zoo see the same names as in eager mode.

A compile failure shows at the first call (dynamo/inductor errors), or at the first
backward (double backward of a gradient penalty). So compilation is tried first on a deep
copy of the models with one D step and one G step, the caller's RNG states saved and
restored around it: the trial's own models are only compiled when that works, and the
trial's random stream is the same whether compile is on, off or fell back.
"""
from __future__ import annotations

import copy
import random
import time
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator

import numpy as np
import torch

from harness.spec import PerformanceSpec
from harness.steps import Models


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without moving the torch, CUDA, numpy or Python random streams."""
    torch_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
        np.random.set_state(np_state)
        random.setstate(py_state)


def _compile_in_place(m: Models) -> None:
    m.G.compile()
    m.D.compile()


def _reason(err: BaseException) -> str:
    """The outer error's type and its root cause's first line (dynamo wraps the backend's
    own error: "backend='inductor' raised:" then the C++ compiler's complaint)."""
    root = err
    for _ in range(5):
        inner = getattr(root, "inner_exception", None) or root.__cause__
        if inner is None:
            break
        root = inner
    lines = [line.strip() for line in str(root).splitlines() if line.strip()]
    text = f"{type(root).__name__}: {lines[0][:200]}" if lines else type(root).__name__
    return text if root is err else f"{type(err).__name__}: {text}"


def try_compile(m: Models, probe_step: Callable[[Models], None]) -> Dict[str, Any]:
    """Compile G and D in place if a probe step on a copy of the models works.

    Returns ``{"compile": bool, "compile_s": seconds of the probe (compile time),
    "compile_fallback": reason}`` (the reason only when it fell back)."""
    t0 = time.perf_counter()
    try:
        with preserved_rng():
            candidate = copy.deepcopy(m)
            _compile_in_place(candidate)
            probe_step(candidate)
            del candidate
    except Exception as err:  # no C++ compiler, an op the backend lacks, double backward, ...
        reason = _reason(err)
        warnings.warn(f"performance.compile: torch.compile does not work here ({reason}); training eager",
                      RuntimeWarning, stacklevel=2)
        return {"compile": False, "compile_s": round(time.perf_counter() - t0, 3), "compile_fallback": reason}
    _compile_in_place(m)
    return {"compile": True, "compile_s": round(time.perf_counter() - t0, 3)}


def apply(perf: PerformanceSpec, m: Models, probe_step: Callable[[Models], None]) -> Dict[str, Any]:
    """Apply the switches to the built models; returns what is in effect (for every row)."""
    effect: Dict[str, Any] = {"channels_last": bool(perf.channels_last), "compile": False}
    if perf.channels_last:
        for module in (m.G, m.D, m.G_ema):
            module.to(memory_format=torch.channels_last)
    if perf.compile:
        effect.update(try_compile(m, probe_step))
    return effect
