"""The trial's side of tracking: one background thread per tracker feeds it.

The training loop only enqueues (a report row, a sample grid, the end), so a slow or
unreachable tracker never slows a step, nor another tracker; a tracker that raises is reported once, as a
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
import time
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


def missing_package(name: str, who: str = "trials run") -> Optional[str]:
    """One line naming what to install when tracker ``name``'s package is missing (``who``
    runs without it)."""
    entry = TRACKERS[name]
    if importlib.util.find_spec(entry.cls.package) is not None:
        return None
    return (f"tracking.{name}: the {entry.cls.package} package is not installed (pip install {entry.cls.install}, "
            f"or pip install 'ganbench[tracking]'); {who} without it")


class _Feed:
    """One tracker, its queue and the daemon thread that feeds it."""

    def __init__(self, tracker: Tracker, images: bool, work: Any, trial: str):
        self.tracker, self.images = tracker, images
        self.queue: "queue.Queue[Tuple[str, Any]]" = queue.Queue(QUEUE_SIZE)
        self.started = False   # its run is open
        self.stopped = False   # it raised: nothing more is queued for it
        self.dropped = False
        self.thread = threading.Thread(target=work, args=(self,), name=f"ganbench-{tracker.name}-{trial}", daemon=True)


class Tracking:
    """The trackers of one trial, each fed from its own queue by its own daemon thread
    (so a hanging MLflow server holds up neither the trial nor TensorBoard)."""

    def __init__(self, spec: Any, record: Any, info: RunInfo):
        self.record, self.info = record, info
        self.timeout_s = spec.close_timeout_s
        self.state: Dict[str, Dict[str, Any]] = read_json(record.tracking_path) or {}
        self._lock = threading.Lock()  # the state and its file, shared by the threads
        self.feeds: List[_Feed] = []
        for name, options in spec.enabled():
            problem = missing_package(name, "this trial runs")
            if problem is not None:
                _warn(record, problem)
                continue
            tracker = TRACKERS[name].cls(options, info, self.state.get(name) or {})
            self.feeds.append(_Feed(tracker, bool(getattr(options, "images", True)), self._work, info.trial))
        self._sent_texts: Dict[str, str] = {}
        self._done = False
        for feed in self.feeds:
            feed.thread.start()

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
        if self._done:
            return
        for feed in self.feeds:
            if feed.stopped:
                continue
            try:
                feed.queue.put_nowait((kind, payload))
            except queue.Full:
                if not feed.dropped:
                    feed.dropped = True
                    _warn(self.record, f"tracking.{feed.tracker.name}: {QUEUE_SIZE} events are waiting for it; "
                          "newer ones are dropped (the trial's own records are complete)")

    def _end(self, kind: str, payload: Any) -> None:
        if self._done:
            return
        self._done = True
        for feed in self.feeds:
            feed.queue.put((kind, payload))
        deadline = time.monotonic() + self.timeout_s
        for feed in self.feeds:  # a slow first import or an unreachable server: waited for, up to the deadline
            feed.thread.join(max(0.0, deadline - time.monotonic()))
        busy = [f.tracker.name for f in self.feeds if f.thread.is_alive() and f.started]
        if busy:
            _warn(self.record, f"tracking: {', '.join(busy)} still sending after {self.timeout_s:g} s "
                  "(tracking.close_timeout_s); the trial ends without waiting")
        opening = [f.tracker.name for f in self.feeds if f.thread.is_alive() and not f.started]
        if opening:
            _warn(self.record, f"tracking: {', '.join(opening)} had not opened its run when the trial ended (an "
                  "unreachable server?); the trial ends without it")

    # ----------------------------------------------------- the threads' side
    def _work(self, feed: _Feed) -> None:
        self._feed(feed)
        feed.stopped = True

    def _feed(self, feed: _Feed) -> None:
        tracker = feed.tracker
        kept = self._call(tracker, "start")
        if kept is False:
            return
        feed.started = True
        with self._lock:
            self.state[tracker.name] = {**self.state.get(tracker.name, {}), **(kept if isinstance(kept, dict) else {})}
            self._save()
        while True:
            kind, payload = feed.queue.get()
            if kind in ("finish", "close"):
                if self._call(tracker, kind, *(payload or ())) is not False:
                    self._publish(tracker)
                return
            step = payload[0]
            held = self.state.get(tracker.name, {}).get("last_step", -1)
            if not tracker.rewrites_history and step <= held:
                continue  # a resumed trial's step the run already holds
            if kind == "image":
                if feed.images and self._call(tracker, "image", step, SAMPLES_TAG, payload[1]) is False:
                    return
                continue
            _, values, texts = payload
            if self._call(tracker, "log", step, values) is False or (texts and self._call(tracker, "text", step, texts)
                                                                     is False):
                return
            if tracker.rewrites_history:
                continue  # it never skips a step: no last step to keep (no write per row)
            with self._lock:
                self.state.setdefault(tracker.name, {})["last_step"] = step
                self._save()

    def _call(self, tracker: Tracker, method: str, *args: Any) -> Any:
        """The tracker's ``method`` called (its result, or True); False when it raised
        (then its feed stops: one warning, and the trial goes on without it)."""
        try:
            result = getattr(tracker, method)(*args)
        except Exception as err:  # noqa: BLE001 - a tracker never fails the trial
            message = f"{type(err).__name__}: {err}".strip().splitlines()[0][:800]
            _warn(self.record, f"tracking.{tracker.name}: {method} failed ({message}); the trial goes on without "
                  f"{tracker.name}")
            return False
        return True if result is None else result

    def _save(self) -> None:
        try:
            self.record.write_json(self.record.tracking_path, self.state)
        except Exception as err:  # noqa: BLE001 - losing it only costs a resumed run's continuity
            _warn(self.record, f"tracking: could not keep the trackers' run ids ({err})")

    def _publish(self, tracker: Tracker) -> None:
        if getattr(self.record, "remote", None) is None:
            return
        for path in tracker.files():
            try:
                self.record.publish(path)
            except Exception as err:  # noqa: BLE001
                _warn(self.record, f"tracking.{tracker.name}: could not upload {path.name} ({err})")
                return


def _warn(record: Any, message: str) -> None:
    warnings.warn(f"{getattr(record, 'where', record)}: {message}", RuntimeWarning, stacklevel=2)
