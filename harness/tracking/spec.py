"""The ``tracking:`` section of a trial config (and of a study file, for all its trials)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from harness.tracking.mlflow_tracker import MlflowOptions
from harness.tracking.tensorboard_tracker import TensorBoardOptions
from harness.tracking.wandb_tracker import WandbOptions


@dataclass
class TrackingSpec:
    """Where a trial also sends its losses, metrics, ADA p, regularizer statistics, sample
    grids and config (docs/tracking.md). A tracker that fails never fails or slows the
    trial: one warning, and training goes on. Not part of a trial's identity: a resume may
    change it."""

    # TensorBoard event files in the trial's folder (tensorboard/); null turns it off.
    tensorboard: Optional[TensorBoardOptions] = field(default_factory=TensorBoardOptions)
    # MLflow (one run per trial, nested under one run per study); null = off.
    mlflow: Optional[MlflowOptions] = None
    # Weights & Biases (one run per trial, grouped by study); null = off.
    wandb: Optional[WandbOptions] = None
    # Seconds a finishing trial waits for its trackers to deliver what it sent (then it
    # ends anyway, with one warning).
    close_timeout_s: float = field(default=15.0, metadata={"min": 0.0, "max": 3600.0})

    def enabled(self):
        """(name, options) of each tracker that is on."""
        from harness.tracking.base import TRACKERS

        return [(name, getattr(self, name)) for name in TRACKERS if getattr(self, name, None) is not None]
