"""The study's side of tracking: the runs its trials belong to (an MLflow parent run).

The driver opens them before any trial is scheduled and ends them when the study ends;
their ids are kept in the study's record, so a resumed study continues the same parent
run. Like a trial's trackers, a tracker that fails here costs one warning, and waits at
most ``tracking.close_timeout_s`` — the study runs on without it.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional

from harness.files import read_json
from harness.tracking.base import TRACKERS
from harness.tracking.hub import missing_package


def _bounded(fn: Callable[[], Any], timeout_s: float) -> Any:
    """``fn()`` on a daemon thread, waited for at most ``timeout_s``: (result, error)."""
    box: Dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = fn()
        except Exception as err:  # noqa: BLE001
            box["error"] = err

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return None, TimeoutError(f"no answer within {timeout_s:g} s (tracking.close_timeout_s)")
    return box.get("result"), box.get("error")


class StudyTracking:
    """Opens and ends the study-level runs of the trackers a study's trials use."""

    def __init__(self, spec: Any, record: Any, study: str, out: Callable[[str], None]):
        self.spec, self.record, self.study, self.out = spec, record, study, out
        self.parents: Dict[str, str] = {}

    def start(self) -> Dict[str, str]:
        """Every study run, opened or continued: tracker name -> run id (the trials' parents)."""
        kept = read_json(self.record.tracking_path) or {}
        for name, options in self.spec.enabled():
            problem = missing_package(name)
            if problem is not None:
                self.out(f"[{self.study}] WARNING: {problem}")
                continue
            cls = TRACKERS[name].cls
            run_id, err = _bounded(lambda c=cls, o=options, k=kept.get(name): c.start_study(o, self.study, k),
                                   self.spec.close_timeout_s)
            if err is not None:
                self.out(f"[{self.study}] WARNING: tracking.{name}: the study's run could not be opened "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:800] if str(err) else ''}); "
                         "trials still try on their own")
            elif run_id:
                self.parents[name] = run_id
        if self.parents:
            self.record.write_json(self.record.tracking_path, {**kept, **self.parents})
        return dict(self.parents)

    def end(self, status: str) -> None:
        for name, run_id in self.parents.items():
            options = getattr(self.spec, name)
            _, err = _bounded(lambda c=TRACKERS[name].cls, o=options, r=run_id: c.end_study(o, r, status),
                              self.spec.close_timeout_s)
            if err is not None:
                self.out(f"[{self.study}] WARNING: tracking.{name}: the study's run could not be ended ({err})")


def effective(plan: Any) -> Optional[Any]:
    """The tracking section the study's trials run with."""
    return plan.study.tracking if plan.study.tracking is not None else plan.base.tracking
