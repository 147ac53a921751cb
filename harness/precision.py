"""How a trial's training steps compute: the precision of G's and D's forward passes, and
the backend switches that trade reproducibility or accuracy for speed.

``performance.precision``:

- ``fp32`` (the default everywhere): no autocast.
- ``bf16``: G's and D's forward passes under ``torch.autocast`` with bfloat16 (CUDA, and
  CPU, where its speed depends on the processor's bf16 instructions: x1.5 faster than
  fp32 on an AVX512-BF16 CPU in tests/bench/test_precision_speed.py, slower without
  them). bfloat16 has fp32's range, so no gradient scaling.
- ``fp16`` (CUDA only): autocast with float16 and one :class:`torch.amp.GradScaler` per
  optimizer (G's — a transfer method's extra networks such as MineGAN's miner train in
  it — and D's), checkpointed with the trial. A step whose gradients are not finite is
  skipped by its scaler (which halves its scale) and is not a divergence; but
  ``MAX_SKIPPED_IN_ROW`` skipped steps of one optimizer in a row, or a scale below
  ``MIN_SCALE``, is (the trial is marked ``diverged`` naming which).

Only the model calls run under autocast: augmentation, the losses (on logits cast to
fp32), gradient penalties and every regularizer term (R1 and GP differentiate D again, in
fp32), the optimizer steps and the EMA update (on the fp32 weights: autocast never changes
a parameter's dtype) run in full precision. Evaluation never runs under autocast and never
uses TF32 (:func:`full_precision`, around every evaluation), whatever the training switches are.

``allow_tf32`` lets CUDA matmuls and cuDNN convolutions use TF32 in training (off by
default: torch would otherwise use it for convolutions); ``cudnn_benchmark`` lets cuDNN
time its algorithms and keep the fastest (faster, not bitwise reproducible across runs);
``deterministic`` asks torch for deterministic algorithms only (an op without one raises).
"""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from typing import Any, Dict, Iterator, Optional

PRECISIONS = ("fp32", "bf16", "fp16")
# Devices each precision can train on (validation refuses the others).
PRECISION_DEVICES = {"fp32": ("cpu", "cuda", "mps"), "bf16": ("cpu", "cuda"), "fp16": ("cuda",)}
# (torch is imported only where a trial trains: validation needs none of it)
DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
MAX_SKIPPED_IN_ROW = 50
MIN_SCALE = 2.0 ** -10
OPTIMIZERS = ("d", "g")


class Precision:
    """Autocast, gradient scaling and skipped-step bookkeeping of one trial's steps."""

    def __init__(self, name: str = "fp32", device_type: str = "cpu"):
        if name not in PRECISIONS:
            raise ValueError(f"precision {name!r}: expected one of {', '.join(PRECISIONS)}")
        import torch

        self.name, self.device_type = name, device_type
        self.dtype: Any = getattr(torch, DTYPES[name]) if name in DTYPES else None
        self.scalers: Dict[str, Any] = {}
        if name == "fp16":
            self.scalers = {k: torch.amp.GradScaler(device_type) for k in OPTIMIZERS}
        self.skipped_in_row = {k: 0 for k in OPTIMIZERS}
        self.skipped = {k: 0 for k in OPTIMIZERS}

    @property
    def scaled(self) -> bool:
        return bool(self.scalers)

    def autocast(self):
        """The context G's and D's forward passes run in."""
        if self.dtype is None:
            return nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: Any, which: str) -> None:
        scaler = self.scalers.get(which)
        (scaler.scale(loss) if scaler is not None else loss).backward()

    def step(self, which: str, optimizer: Any, finite: bool = True) -> bool:
        """Step ``optimizer`` (``which``: "d" or "g"); False when the step was skipped:
        under fp16, because its gradients (or, ``finite`` False, its losses) were not
        finite. Without a scaler every step is taken."""
        scaler = self.scalers.get(which)
        if scaler is None:
            optimizer.step()
            return True
        before = scaler.get_scale()
        if finite:
            scaler.step(optimizer)  # skips the step itself when a gradient is inf/nan
            scaler.update()
            taken = scaler.get_scale() >= before  # a skip always halves the scale
        else:  # a loss overflowed: its gradients mean nothing, whatever they are
            optimizer.zero_grad(set_to_none=True)
            scaler.update(before * scaler.get_backoff_factor())
            taken = False
        self.skipped_in_row[which] = 0 if taken else self.skipped_in_row[which] + 1
        self.skipped[which] += 0 if taken else 1
        return taken

    def failure(self) -> Optional[str]:
        """Why fp16 training has diverged, or None."""
        for which, scaler in self.scalers.items():
            if self.skipped_in_row[which] >= MAX_SKIPPED_IN_ROW:
                return f"{self.skipped_in_row[which]} {which.upper()} steps in a row skipped by the fp16 " \
                       "gradient scaler (non-finite gradients)"
            if scaler.get_scale() < MIN_SCALE:
                return f"the fp16 gradient scale of {which.upper()} fell to {scaler.get_scale():g}, " \
                       f"below {MIN_SCALE:g}"
        return None

    def stats(self) -> Dict[str, float]:
        """For the report row: each scaler's scale and skipped steps (fp16 only)."""
        out: Dict[str, float] = {}
        for which, scaler in self.scalers.items():
            out[f"scale_{which}"] = float(scaler.get_scale())
            out[f"skipped_{which}"] = self.skipped[which]
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
                "skipped_in_row": dict(self.skipped_in_row), "skipped": dict(self.skipped)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for which, scaler in self.scalers.items():
            saved = (state.get("scalers") or {}).get(which)
            if saved:
                scaler.load_state_dict(saved)
        self.skipped_in_row.update(state.get("skipped_in_row") or {})
        self.skipped.update(state.get("skipped") or {})


@contextmanager
def full_precision(device: Any) -> Iterator[None]:
    """True float32 for evaluation on CUDA: TF32 matmuls and convolutions off, and no
    autocast; the caller's switches restored afterwards (training may use them; metrics
    must not, or the same generator scores differently on an A100 than on a V100). On
    other devices nothing changes (no autocast is active outside the training steps)."""
    import torch

    if torch.device(device).type != "cuda":
        yield
        return
    saved = [(owner, attr, getattr(owner, attr)) for owner, attr in _tf32_switches()]
    set_tf32(False)
    try:
        with torch.autocast(device_type="cuda", enabled=False):
            yield
    finally:
        for owner, attr, value in saved:
            setattr(owner, attr, value)


def _tf32_switches():
    """(owner, attribute) of each TF32 switch: the ``allow_tf32`` flags of CUDA matmuls and
    cuDNN. (torch >= 2.9 also has per-backend ``fp32_precision`` settings, but setting
    those makes torch's own readers of the flags — torch.export among them — raise on a
    "mix of the legacy and new APIs"; the flags work on every supported torch.)"""
    import torch

    return [(torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32")]


def tf32_enabled() -> bool:
    """Whether any TF32 switch is on."""
    return any(bool(getattr(owner, attr)) for owner, attr in _tf32_switches())


def set_tf32(on: bool) -> None:
    """Every TF32 switch (CUDA matmuls, cuDNN) on or off."""
    for owner, attr in _tf32_switches():
        setattr(owner, attr, bool(on))


def apply_backend_switches(perf: Any, device: Any) -> Dict[str, Any]:
    """Set the process's backend switches for a trial's training (process-wide: one trial
    trains per process); returns what is in effect, for every report row."""
    import torch

    set_tf32(bool(perf.allow_tf32))
    torch.backends.cudnn.benchmark = bool(perf.cudnn_benchmark)
    torch.backends.cudnn.deterministic = bool(perf.deterministic)
    if perf.deterministic and device.type == "cuda":
        # cuBLAS is deterministic only with a fixed workspace (read when its handle is made)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if torch.are_deterministic_algorithms_enabled() != bool(perf.deterministic):  # (the call imports inductor)
        torch.use_deterministic_algorithms(bool(perf.deterministic))
    return {"precision": perf.precision, "allow_tf32": bool(perf.allow_tf32),
            "cudnn_benchmark": bool(perf.cudnn_benchmark), "deterministic": bool(perf.deterministic)}
