"""Experiment trackers: TensorBoard (on by default), MLflow and W&B (docs/tracking.md).

One module per tracker (``*_tracker.py``) registers it by the name its ``tracking:`` key
uses; :class:`hub.Tracking` feeds a trial's trackers from a background thread.
"""
from harness.tracking.base import TRACKERS, RunInfo, Tracker
from harness.tracking.hub import Tracking, flatten, missing_package, row_values
from harness.tracking.spec import TrackingSpec

__all__ = ["TRACKERS", "RunInfo", "Tracker", "Tracking", "TrackingSpec", "flatten", "missing_package", "row_values"]
