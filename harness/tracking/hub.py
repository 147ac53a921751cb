"""The trial's side of tracking: one background thread feeds every tracker that is on.

The training loop only enqueues (a report row, a sample grid, the end), so a slow or
unreachable tracker never slows a step; a tracker that raises is reported once, as a
warning naming it, and dropped — the trial goes on. What each tracker needs to continue
its run after a resume (run ids, the last step it holds) is kept in the trial's record
(``TrialRecord.tracking_path``), rewritten atomically as it changes.
"""
from __future__ import annotations

import importlib.util
import json
import math
import queue
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness.files import read_json
from harness.tracking.base import TRACKERS, RunInfo, Tracker

QUEUE_SIZE = 10_000   # events waiting for a slow tracker before new ones are dropped
# report-row fields sent as scalars: groups of numbers, and single numbers (progress/...)
GROUPS = ("losses", "metrics", "best", "augment", "regularizers")
PROGRESS = ("samples_seen", "wall_s", "train_s", "compute_s", "eval_s", "host_load", "peak_rss_mb", "peak_cuda_mb",
            "effective_batch")
SAMPLES_TAG = "samples"


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def row_values(row: Dict[str, Any]) -> Dict[str, float]:
    """The scalars of one report row, by tracker tag (``losses/d_loss``, ``metrics/fid``,
    ``augment/p``, ``regularizers/...``, ``progress/samples_seen``, ...)."""
    out: Dict[str, float] = {}
    for group in GROUPS:
        for key, value in (row.get(group) or {}).items():
            number = _number(value)
            if number is not None:
                out[f"{group}/{key}"] = number
    for key in PROGRESS:
        number = _number(row.get(key))
        if number is not None:
            out[f"progress/{key}"] = number
    return out


def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A trial config as dotted keys with plain values (lists as JSON; a list of named
    items by name: ``regularizers.cr.weight``), for hyperparameter tables; ``tracking`` itself is left out (its URIs may hold credentials)."""
    out: Dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if not prefix and key == "tracking":
            continue
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
            for item in value:  # regularizers.cr.weight: by name, as the study's labels address them
                out.update(flatten({k: v for k, v in item.items() if k != "name"}, f"{name}.{item['name']}."))
        elif isinstance(value, (list, dict)):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def missing_package(name: str) -> Optional[str]:
    """One line naming what to install when tracker ``name``'s package is missing."""
    entry = TRACKERS[name]
    if importlib.util.find_spec(entry.cls.package) is not None:
        return None
    return (f"tracking.{name}: the {entry.cls.package} package is not installed (pip install {entry.cls.install}, "
            f"or pip install 'ganbench[tracking]'); trials run without it")


class Tracking:
    """The trackers of one trial, fed from a queue by one daemon thread."""

    def __init__(self, spec: Any, record: Any, info: RunInfo):
        self.record, self.info = record, info
        self.timeout_s = spec.close_timeout_s
        self.state: Dict[str, Dict[str, Any]] = read_json(record.tracking_path) or {}
        self.trackers: List[Tracker] = []
        self.images: Dict[str, bool] = {}
        for name, options in spec.enabled():
            problem = missing_package(name)
            if problem is not None:
                _warn(record, problem.replace("trials run", "this trial runs"))
                continue
            tracker = TRACKERS[name].cls(options, info, self.state.get(name) or {})
            self.trackers.append(tracker)
            self.images[name] = bool(getattr(options, "images", True))
        self._sent_texts: Dict[str, str] = {}
        self._queue: "queue.Queue[Tuple[str, Any]]" = queue.Queue(QUEUE_SIZE)
        self._dropped = False
        self._done = False
        self._busy: Optional[str] = None  # the tracker the thread is waiting for
        self._thread = threading.Thread(target=self._work, name=f"ganbench-tracking-{info.trial}", daemon=True)
        if self.trackers:
            self._thread.start()

    # ------------------------------------------------------- the trial's side
    def on_report(self, row: Dict[str, Any], trial: Any = None) -> None:
        """A report callback (harness.reporting): send the row's scalars and protocols."""
        step = int(row.get("iteration", 0))
        texts = {}
        for metric, protocol in (row.get("protocol") or {}).items():
            text = json.dumps(protocol, sort_keys=True, default=str)
            if self._sent_texts.get(metric) != text:
                self._sent_texts[metric] = text
                texts[f"protocol/{metric}"] = text
        self._put("row", (step, row_values(row), texts))

    def image(self, step: int, path: Path) -> None:
        self._put("image", (step, Path(path)))

    def finish(self, step: int, status: str, best: Dict[str, float], last: Dict[str, float]) -> None:
        """End every run: hyperparameters beside the final and best metric values."""
        hparams = {**flatten(self.info.config), **{f"label.{k}": v for k, v in self.info.labels.items()}}
        # tags of their own: the series best/<m> and metrics/<m> are already sent row by row
        results = {f"hparams/final/{k}": float(v) for k, v in last.items() if _number(v) is not None}
        results.update({f"hparams/best/{k}": float(v) for k, v in best.items() if _number(v) is not None})
        self._end("finish", (step, status, hparams, results))

    def close(self) -> None:
        """Flush and let go without ending the runs (a pause, or the process ends)."""
        self._end("close", None)

    def _put(self, kind: str, payload: Any) -> None:
        if not self.trackers or self._done:
            return
        try:
            self._queue.put_nowait((kind, payload))
        except queue.Full:
            if not self._dropped:
                self._dropped = True
                _warn(self.record, f"tracking: {QUEUE_SIZE} events are waiting for a slow tracker; newer ones are "
                      "dropped (the trial's own records are complete)")

    def _end(self, kind: str, payload: Any) -> None:
        if not self.trackers or self._done:
            return
        self._done = True
        self._queue.put((kind, payload))
        self._thread.join(self.timeout_s)
        if self._thread.is_alive():
            busy = self._busy or ", ".join(t.name for t in self.trackers)
            _warn(self.record, f"tracking: {busy} still sending after {self.timeout_s:g} s "
                  "(tracking.close_timeout_s); the trial ends without waiting")

    # ----------------------------------------------------- the thread's side
    def _work(self) -> None:
        live = list(self.trackers)
        for tracker in list(live):
            kept = self._call(tracker, live, "start")
            if isinstance(kept, dict):
                self.state[tracker.name] = {**self.state.get(tracker.name, {}), **kept}
        self._save()
        while True:
            kind, payload = self._queue.get()
            if kind in ("finish", "close"):
                for tracker in list(live):
                    if kind == "finish":
                        self._call(tracker, live, "finish", *payload)
                    else:
                        self._call(tracker, live, "close")
                self._publish()
                return
            step = payload[0]
            for tracker in list(live):
                held = self.state.get(tracker.name, {}).get("last_step", -1)
                if not tracker.rewrites_history and step <= held:
                    continue  # a resumed trial's step the run already holds
                if kind == "row":
                    _, values, texts = payload
                    ok = self._call(tracker, live, "log", step, values)
                    if ok and texts:
                        ok = self._call(tracker, live, "text", step, texts)
                elif self.images.get(tracker.name):
                    ok = self._call(tracker, live, "image", step, SAMPLES_TAG, payload[1])
                else:
                    continue
                if ok and kind == "row":
                    self.state.setdefault(tracker.name, {})["last_step"] = step
            if kind == "row":
                self._save()

    def _call(self, tracker: Tracker, live: List[Tracker], method: str, *args: Any) -> Any:
        """The tracker's ``method`` called (its result, or True); False when it raised."""
        self._busy = tracker.name
        try:
            result = getattr(tracker, method)(*args)
        except Exception as err:  # noqa: BLE001 - a tracker never fails the trial
            live.remove(tracker)
            message = f"{type(err).__name__}: {err}".strip().splitlines()[0][:300]
            _warn(self.record, f"tracking.{tracker.name}: {method} failed ({message}); the trial goes on without "
                  f"{tracker.name}")
            return False
        return True if result is None else result

    def _save(self) -> None:
        try:
            self.record.write_json(self.record.tracking_path, self.state)
        except Exception as err:  # noqa: BLE001 - losing it only costs a resumed run's continuity
            _warn(self.record, f"tracking: could not keep the trackers' run ids ({err})")

    def _publish(self) -> None:
        self._save()
        if getattr(self.record, "remote", None) is None:
            return
        for tracker in self.trackers:
            for path in tracker.files():
                try:
                    self.record.publish(path)
                except Exception as err:  # noqa: BLE001
                    _warn(self.record, f"tracking.{tracker.name}: could not upload {path.name} ({err})")
                    break


def _warn(record: Any, message: str) -> None:
    warnings.warn(f"{getattr(record, 'where', record)}: {message}", RuntimeWarning, stacklevel=2)
