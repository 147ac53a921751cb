"""One ganbench trial as a Ray Tune Trainable (module level; imports Ray).

``step`` trains to the next evaluation and reports it; Tune checkpoints are pointers to the
trial engine's own checksummed checkpoint in the record, so a restarted trial resumes
where the engine last saved. What the study decides (results folder, objective) comes in
through ``tune.with_parameters`` as a :class:`RunSettings`, what one trial runs through the
``plan`` key of its Tune config (a :class:`harness.study.TrialPlan` as a dict).

A trial that raises is recorded ``failed`` and ends with a final ``failed`` result instead
of an exception: Tune's FailureConfig retries are for dead workers and nodes, and a
deterministic error would only fail again.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from harness.files import atomic_write_json
from harness.store import StudyRecord, TrialRecord
from harness.tune_adapter import tune

POINTER = "ganbench_checkpoint.json"
LOCK_WAIT_S = 120.0  # longer than a store's lease lives (harness.locks.LEASE_TTL_S)


@dataclass(frozen=True)
class RunSettings:
    """What every trial of one study phase shares."""

    results_dir: str
    metric: Optional[str] = None   # the search metric (None for a grid)
    objective: str = "best"
    mode: str = "min"
    allow_new_data: bool = False   # resume trials whose dataset changed since they started
    results_uri: Optional[str] = None  # the study on object storage (results_dir is then the driver's staging)
    assets: Tuple[Dict[str, Any], ...] = ()  # datasets and source-model files the trials read (harness.assets)
    study: str = ""                          # the study's name (trackers group its trials by it)
    tracking_parents: Tuple[Tuple[str, str], ...] = ()  # tracker -> the study's run (an MLflow parent)

    def study_record(self) -> StudyRecord:
        """The study's record as this process sees it (on object storage: its own staging)."""
        return StudyRecord.open(self.results_uri or self.results_dir)


class GanTrainable(tune.Trainable):
    """A ganbench trial (``harness.trial.Trial``) driven by Tune."""

    def setup(self, config: Dict[str, Any], run: Optional[RunSettings] = None) -> None:
        assert run is not None, "GanTrainable is built with tune.with_parameters(GanTrainable, run=RunSettings(...))"
        self.run_settings = run
        self.study_record = run.study_record()
        self._configure(config)

    def _configure(self, config: Dict[str, Any]) -> None:
        # Opening the record waits for the first step: Tune may construct an actor for a
        # trial and then run that trial on another (cached) actor, and only the actor that
        # trains may touch the record.
        self.payload = config["plan"]
        self.gb_id = self.payload["trial_id"]
        self.trial, self.finished, self.error, self.lock = None, None, None, None
        self.opened = False

    def _open(self) -> None:
        if self.opened:
            return
        self.opened = True
        self.trial, self.finished, self.error, self.lock = open_trial(self.run_settings, self.study_record,
                                                                      self.payload, self.trial_id)

    def _fail(self, record: TrialRecord, err: Exception) -> None:
        self.error = record_failure(record, self.trial, err)

    def step(self) -> Dict[str, Any]:
        self._open()
        if self.error is None and self.finished is None:
            try:
                self.finished = self.trial.advance(self.trial.next_eval_iteration())
            except Exception as err:
                self._fail(self.trial.record, err)
        return self._result()

    def _result(self) -> Dict[str, Any]:
        return tune_result(self.run_settings, self.gb_id, self.trial, self.finished, self.error)


    def save_checkpoint(self, checkpoint_dir: str) -> None:
        if self.trial is None:
            return
        if self.finished is None and self.error is None:
            self.trial.checkpoint_now()
        from harness import checkpoint as ckpt

        manifest = ckpt.latest_manifest(self.trial.record.checkpoints_dir)
        atomic_write_json(Path(checkpoint_dir) / POINTER, {
            "trial_id": self.gb_id, "record": self.trial.record.where,
            "iteration": self.trial.iteration, "manifest": manifest,
        })

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        # The trial engine already resumed from its record's newest good checkpoint when
        # it opened; the Tune checkpoint only says which iteration that must reach.
        self._open()
        file = Path(checkpoint_dir) / POINTER
        if self.trial is None or not file.exists():
            return
        manifest = json.loads(file.read_text()).get("manifest") or {}
        if self.finished is None and self.trial.iteration < int(manifest.get("iteration", 0)):
            raise RuntimeError(
                f"trial {self.gb_id}: {self.trial.record.where} holds no checkpoint at iteration "
                f"{manifest.get('iteration')} although one was written there; on a multi-node cluster the "
                "results must be on storage every node shares (NFS or similar, or object storage: --results s3://...)")

    def reset_config(self, new_config: Dict[str, Any]) -> bool:
        self._close()
        self._configure(new_config)
        return True

    def cleanup(self) -> None:
        self._close()

    def _close(self) -> None:
        trial = getattr(self, "trial", None)
        if trial is not None and getattr(self, "finished", None) is None and self.error is None:
            trial.stop("stopped")  # a scheduler (ASHA) or the driver ended it early
        if trial is not None:
            trial.close()  # its trackers let go (the lock is this actor's: released below)
        self.trial = None
        if getattr(self, "lock", None) is not None:
            self.lock.release()
            self.lock = None


def open_trial(run: RunSettings, study: StudyRecord, payload: Dict[str, Any], tune_trial_id: str,
               workers: Any = None) -> Tuple[Any, Any, Optional[str], Any]:
    """Open a planned trial on this process: (trial, finished, error, lock).

    Takes the record's lock, records the attempt, fetches the study's assets on object
    storage and starts (or resumes) the trial; a record already ``failed`` is reported
    again (failed is final) instead of training again; a trial that cannot start is
    recorded failed (the error comes back). ``workers``: rank 0 of a trial's workers."""
    from harness.spec import parse_trial
    from harness.trial import Trial

    gb_id = payload["trial_id"]
    record = study.trial(gb_id)
    record.root.mkdir(parents=True, exist_ok=True)
    # a restarted trial waits for a stale actor that still holds the folder (the OS
    # frees the lock of a dead process; a store's lease expires) instead of writing
    # the record from two processes
    lock = record.lock(f"trial {gb_id}", "a trial directory", wait_s=LOCK_WAIT_S)
    record.pull()  # on object storage: the record as the store holds it (whoever locks, pulls)
    previous = record.status()
    if previous and previous["status"] == "failed":
        return None, None, previous.get("error") or "failed", lock
    study.write_trial_info(gb_id, {
        "trial_id": gb_id, "phase": payload["phase"], "labels": payload["labels"],
        "overrides": payload.get("overrides", {}), "tune_trial_id": tune_trial_id,
    })
    attempt: Dict[str, Any] = {"time": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
                               "node_id": _node_id()}
    if workers is not None:
        attempt["workers"] = workers.world
    trial, finished, error = None, None, None
    try:
        fetched = fetch_assets(run, study)
        if fetched:
            attempt["fetched"] = [str(p) for p in fetched]
        trial = Trial(parse_trial(payload["config"]), record, lock=lock, allow_new_data=run.allow_new_data,
                      tracking={"study": run.study, "trial": gb_id, "phase": payload["phase"],
                                "labels": payload["labels"], "parents": dict(run.tracking_parents)},
                      **({"workers": workers} if workers is not None else {}))
        finished = trial.start()
        attempt.update(resumed_from=trial.iteration, finished=finished.status if finished else None)
    except Exception as err:  # data, weights or a source model that fail to load
        error = record_failure(record, trial, err)
        attempt["error"] = error
        if workers is not None and workers.lost(err):
            raise  # a worker died: Ray Train restarts the workers (not a failure of the trial)
    finally:
        study.append_attempt(gb_id, attempt)
    return trial, finished, error, lock


def fetch_assets(run: RunSettings, study: StudyRecord) -> List[Any]:
    """On object storage: the datasets and source models the trials read, into this node's cache."""
    if study.remote is None:
        return []
    from harness import assets

    return list(assets.fetch(run.assets, study) or [])


def record_failure(record: TrialRecord, trial: Any, err: Exception) -> str:
    """Record ``err`` as the trial's failure (unless Trial.advance did already); its message."""
    import traceback

    error = f"{type(err).__name__}: {err}"
    current = record.status() or {}
    if current.get("status") != "failed":  # Trial.advance records its own failures
        record.set_status("failed", iteration=trial.iteration if trial else current.get("iteration", 0), error=error,
                          traceback=traceback.format_exc())
    return error


def tune_result(run: RunSettings, gb_id: str, trial: Any, finished: Any, error: Optional[str]) -> Dict[str, Any]:
    """What a trial reports to Tune after each evaluation (the schedulers and searchers read it)."""
    from harness.study.search import objective_value

    row = (trial.last_report if trial is not None else None) or {}
    status = "failed" if error else (finished.status if finished else "running")
    result: Dict[str, Any] = {
        "trial": gb_id,
        "iteration": trial.iteration if trial is not None else 0,
        "wall_s": row.get("wall_s", 0.0),
        "train_s": row.get("train_s", 0.0),
        "compute_s": row.get("compute_s") or 0.0,
        "status": status,
        "metrics": dict(row.get("metrics") or {}),
        "best": dict(row.get("best") or {}),
        "done": status != "running",
    }
    if error:
        result["error"] = error
    if run.metric is not None:
        result["objective"] = objective_value(row, run.metric, run.objective, run.mode)
    return result


def _node_id() -> Optional[str]:
    """The Ray node this actor runs on (two nodes on one host are told apart by it)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray
        return None


def bind(run: RunSettings, resources: Any, max_failures: int = 0, ray_train: bool = False):
    """The trainable Tune runs for a study phase: settings bound, resources declared.

    One worker: :class:`GanTrainable` with the trial's CPUs and GPUs. With ``ray_train``
    (the runner's choice: several workers, or gpucheck's one-worker trial): a function
    trainable that asks Tune for (almost) nothing and runs the trial on Ray Train's
    TorchTrainer, whose workers hold the resources (harness.workers_trainable)."""
    if ray_train:
        from harness.workers_trainable import train_workers

        fn = tune.with_parameters(train_workers, run=run, workers=resources.workers, cpus=resources.cpus,
                                  gpus=resources.gpus, max_failures=max_failures)
        # Tune refuses a trial of no resources; a byte of memory reserves nothing that matters
        return tune.with_resources(fn, {"cpu": 0, "memory": 1})
    wanted: Dict[str, float] = {"cpu": resources.cpus}
    if resources.gpus:
        wanted["gpu"] = resources.gpus
    return tune.with_resources(tune.with_parameters(GanTrainable, run=run), wanted)
