"""The training state of a trial: counters, timers, running loss sums, best values and
every RNG — one object, checkpointed as one (the checkpoint's keys are those older records
hold plus ``compute_s``, read with a fallback, so they resume).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from harness.clocks import ComputeClock


@dataclass
class TrainingState:
    iteration: int = 0
    samples_seen: int = 0
    wall_offset: float = 0.0     # seconds accumulated before a resume
    eval_s: float = 0.0
    overhead_s: float = 0.0      # eval + checkpoint + samples + reporting
    loss_sums: Dict[str, float] = field(default_factory=dict)
    loss_count: int = 0
    best: Dict[str, float] = field(default_factory=dict)
    t_start: float = field(default_factory=time.perf_counter)
    # the device's compute clock (harness.clocks): None where the device has none
    clock: Optional[ComputeClock] = None

    # -- timers ------------------------------------------------------------------------
    def start_clock(self) -> None:
        self.t_start = time.perf_counter()

    def wall_s(self) -> float:
        return self.wall_offset + (time.perf_counter() - self.t_start)

    def train_s(self) -> float:
        """Wall seconds of training: wall time minus evaluation, samples, checkpoints."""
        return self.wall_s() - self.overhead_s

    def compute_s(self) -> Optional[float]:
        """Compute seconds of the training steps (harness.clocks), None without a clock."""
        return self.clock.seconds if self.clock is not None else None

    def budget_s(self, clock: str) -> float:
        """The seconds a time budget on ``clock`` ('compute' or 'wall') has spent."""
        if clock == "compute":
            if self.clock is None:
                raise RuntimeError("a compute-clock budget on a device without a compute clock")
            return self.clock.seconds
        return self.train_s()

    # -- losses and best values --------------------------------------------------------
    def add_losses(self, stats: Dict[str, Any]) -> None:
        for k, v in stats.items():
            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + float(v)
        self.loss_count += 1

    def take_mean_losses(self) -> Dict[str, float]:
        """Mean losses since the last report; restarts the running sums."""
        losses = {k: v / max(self.loss_count, 1) for k, v in self.loss_sums.items()}
        self.loss_sums, self.loss_count = {}, 0
        return losses

    def update_best(self, values: Dict[str, float], higher_is_better: Dict[str, bool]) -> Dict[str, float]:
        for name, value in values.items():
            if not math.isfinite(value):
                continue  # a NaN metric value is never the best one (and never written as NaN)
            better = max if higher_is_better.get(name, False) else min
            self.best[name] = better(self.best.get(name, value), value)
        return dict(self.best)

    # -- checkpoint --------------------------------------------------------------------
    def to_checkpoint(self, sampler_generator: torch.Generator) -> Dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "iteration": self.iteration,
            "samples_seen": self.samples_seen,
            "wall_s": self.wall_s(),
            "eval_s": self.eval_s,
            "overhead_s": self.overhead_s,
            "compute_s": self.compute_s(),
            "loss_sums": dict(self.loss_sums),
            "loss_count": self.loss_count,
            "best": dict(self.best),
            "rng": {
                "sampler": sampler_generator.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                          int(np_state[3]), float(np_state[4])],
                "python": _python_rng_state(),
            },
        }

    def load_checkpoint(self, state: Dict[str, Any], sampler_generator: torch.Generator) -> None:
        self.iteration = int(state["iteration"])
        self.samples_seen = int(state["samples_seen"])
        self.wall_offset = float(state["wall_s"])
        self.eval_s = float(state["eval_s"])
        self.overhead_s = float(state["overhead_s"])
        if self.clock is not None:
            # checkpoints written before the compute clock: their training seconds stand in
            spent = state.get("compute_s")
            self.clock.seconds = float(spent if spent is not None else self.wall_offset - self.overhead_s)
        self.loss_sums = dict(state["loss_sums"])
        self.loss_count = int(state["loss_count"])
        self.best = dict(state["best"])
        rng = state["rng"]
        sampler_generator.set_state(rng["sampler"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np_state = rng["numpy"]
        np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), np_state[2], np_state[3],
                             np_state[4]))
        _set_python_rng_state(rng["python"])


def _python_rng_state() -> List[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_rng_state(state: List[Any]) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))
