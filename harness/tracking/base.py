"""What every experiment tracker implements, and the registry of trackers by name.

A tracker is one module of this package that registers one class under the name its
``tracking:`` key uses (``tensorboard``, ``mlflow``, ``wandb``), with an options dataclass
(validated as the key's mapping, documented in docs/config-reference.md). Trackers see a
trial only through :class:`RunInfo` and the calls below, made by one background thread of
:class:`harness.tracking.hub.Tracking` — never by the training loop itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional


@dataclass
class RunInfo:
    """Who the run is: a trial, maybe of a study, and where its record lives."""

    trial: str                      # the trial's id in its study, or the trial's name
    folder: Path                    # the trial's folder (local; the staging copy on a store)
    config: Dict[str, Any]          # the resolved trial config (plain data)
    study: Optional[str] = None     # the study's name (W&B group, MLflow parent run)
    phase: Optional[str] = None     # grid | search | finalists
    labels: Dict[str, Any] = field(default_factory=dict)   # what distinguishes it in its study
    parents: Dict[str, Any] = field(default_factory=dict)  # tracker name -> the study's run (e.g. MLflow run id)
    resumed_at: int = 0             # the iteration the trial resumes from (0: fresh)


class Tracker:
    """One tracker's run for one trial. ``state`` is what the tracker asked to keep
    (``start``'s return value, e.g. its run id) from an earlier start of the same trial."""

    name = ""
    package = ""        # the module it needs
    install = ""        # what to pip install for it
    # True: the tracker can hide history logged after the resume point (TensorBoard's
    # purge_step), so resumed steps are sent again; False: steps it already holds are skipped.
    rewrites_history = False

    def __init__(self, options: Any, info: RunInfo, state: Dict[str, Any]):
        self.options, self.info, self.state = options, info, dict(state)

    def start(self) -> Dict[str, Any]:
        """Open (or continue) the run; return what to keep for a resume."""
        raise NotImplementedError

    def log(self, step: int, values: Dict[str, float]) -> None:
        raise NotImplementedError

    def text(self, step: int, values: Dict[str, str]) -> None:
        """Descriptions that change rarely (metric protocols), as tags or text."""

    def image(self, step: int, tag: str, path: Path) -> None:
        raise NotImplementedError

    def finish(self, step: int, status: str, hparams: Dict[str, Any], results: Dict[str, float]) -> None:
        """End the run at ``step``: its hyperparameters beside the final and best metric values."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and let go without ending the run (the trial pauses or its process ends)."""

    @classmethod
    def start_study(cls, options: Any, study: str, kept: Optional[str]) -> Optional[str]:
        """The study's own run that trial runs belong to (continuing ``kept``, its id from
        an earlier run of the study), or None for a tracker that groups trials otherwise."""
        return None

    @classmethod
    def end_study(cls, options: Any, run_id: str, status: str) -> None:
        """End the study's own run (``status``: completed or failed)."""

    def files(self) -> List[Path]:
        """Files it wrote into the trial's folder (published when a record is on a store)."""
        return []


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    options: type


TRACKERS: Dict[str, Entry] = {}


def register(name: str, options: type) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        cls.name = name
        TRACKERS[name] = Entry(name, cls, options)
        return cls

    return decorate
