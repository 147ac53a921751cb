"""The clocks a trial's time budget can be measured by.

A wall-clock budget measures the machine as much as the method: on a shared host a trial
that gets half a core trains half as many iterations in the same seconds. The
``compute`` clock counts what the trial itself was given, and only while it trains:

- on a CPU device, the CPU time of the trial's process (``time.process_time``: every
  thread, user + system — torch's intra-op pool included) spent inside the training
  steps, less what the process's other Python threads spent meanwhile (the trackers'
  feeds, TensorBoard's writer, Ray's helpers: work that is not training). A trial starved
  by other work waits without being charged, so it reaches the same iterations, later;
- on a CUDA device, the GPU time of the training steps measured with CUDA events
  (``elapsed_time`` between an event recorded before and one after each step). That is
  still elapsed GPU time: trials packed onto one GPU share it and slow each other down.
  A ``samples`` budget is the one no hardware can bend.

Evaluation, sample grids, checkpoints and reporting are outside every clock: the compute
clock only runs between :meth:`ComputeClock.begin` and :meth:`ComputeClock.end` around a
training step, and the wall clock's training seconds are wall time minus that overhead
(see :class:`harness.training_state.TrainingState`).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional

CLOCKS = ("compute", "wall")
# Devices whose training time the compute clock can measure.
COMPUTE_DEVICES = ("cpu", "cuda")


class ComputeClock:
    """Seconds of training compute, summed over the steps between begin() and end()."""

    def __init__(self, seconds: float = 0.0):
        self.seconds = float(seconds)
        self._t0: Optional[float] = None
        self._others: Dict[int, float] = {}

    def begin(self) -> None:
        self._others = _other_threads_cpu()
        self._t0 = time.process_time()

    def end(self) -> None:
        if self._t0 is not None:
            spent = time.process_time() - self._t0
            others = sum(max(0.0, cpu - self._others.get(ident, 0.0)) for ident, cpu in _other_threads_cpu().items())
            self.seconds += max(0.0, spent - others)
            self._t0 = None


def _other_threads_cpu() -> Dict[int, float]:
    """CPU seconds so far of each Python thread but the calling one (by ident); empty
    where the platform cannot tell a thread's CPU time (then nothing is subtracted)."""
    clock_of = getattr(time, "pthread_getcpuclockid", None)
    if clock_of is None:
        return {}
    me, out = threading.get_ident(), {}
    for thread in threading.enumerate():
        if thread.ident is not None and thread.ident != me:
            try:
                out[thread.ident] = time.clock_gettime(clock_of(thread.ident))
            except (OSError, ValueError):  # it ended meanwhile
                pass
    return out


class CudaEventClock(ComputeClock):
    """GPU time of the training steps on one CUDA device, from CUDA events. end() waits
    for the step's kernels (the trial's loss check synchronises every step anyway)."""

    def __init__(self, device: Any, seconds: float = 0.0):
        import torch

        super().__init__(seconds)
        self.device = device
        self._start = torch.cuda.Event(enable_timing=True)
        self._stop = torch.cuda.Event(enable_timing=True)
        self._open = False

    def begin(self) -> None:
        import torch

        self._start.record(torch.cuda.current_stream(self.device))
        self._open = True

    def end(self) -> None:
        if not self._open:
            return
        import torch

        self._stop.record(torch.cuda.current_stream(self.device))
        self._stop.synchronize()
        self.seconds += self._start.elapsed_time(self._stop) / 1000.0
        self._open = False


def compute_clock(device: Any, seconds: float = 0.0) -> Optional[ComputeClock]:
    """The compute clock of ``device`` starting at ``seconds`` (None where there is none)."""
    if device.type == "cuda":
        return CudaEventClock(device, seconds)
    if device.type == "cpu":
        return ComputeClock(seconds)
    return None
