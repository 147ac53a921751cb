"""Run a study on Ray Tune: one Tune trial per ganbench trial.

    StudySpec --plan--> TrialPlans (grid) | Optuna define-by-run space (search)
              --Tuner--> GanTrainable (a tune.Trainable around harness.trial.Trial)
              --records--> <results>/<study>/trials/<trial_id>/  (the trial engine's record)
              --summary--> <results>/<study>/summary.csv|json

Results directory of a study (``--results`` / ``<study name>``)::

    study.yaml        the study as run (base inlined), compared on --resume
    plan.json         the planned grid trials (ids, labels)
    trials/<id>/      one trial record each (config, env, metrics.jsonl, status, samples,
                      checkpoints) + study_trial.json (phase, labels, overrides) and
                      attempts.jsonl (one line per start: host, pid, resumed-from iteration)
    tune/<phase>/     Ray Tune's experiment (grid | search | finalists), for Tuner.restore
    optuna.db         the Optuna study (SQLite): ``optuna trials --storage sqlite:///...``
    summary.csv/json  one row per trial (``ganbench summary DIR``)

Failures: a worker or node that dies mid-trial makes Tune restart the trial from its last
Tune checkpoint (``failures.max_retries`` times); the trial engine resumes from its own
checksummed checkpoint in the record, so its series stays continuous. A trial that
raises is recorded ``failed`` and ends with a final ``failed`` result, not an exception, so
it is not retried (retrying a deterministic error only fails again); a diverged trial ends
normally too. The record directory must be on
storage every node sees (NFS or the like on a multi-node cluster; Ray >= 2.7 asks the
same of Tune's storage_path) — a restarted trial that finds no checkpoint where its Tune
checkpoint says one was written stops with an error naming the directory.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import yaml

from harness import study as st
from harness.errors import ConfigError
from harness.store import TrialRecord, atomic_write_json, atomic_write_text

PHASES = ("grid", "search", "finalists")
POINTER = "ganbench_checkpoint.json"


# ---------------------------------------------------------------------- the trainable
def _quiet_ray_env() -> None:
    # No usage reporting (nothing phones home); Tune's table output off (ganbench prints
    # its own study progress); tiny pointer checkpoints need no snapshot warnings.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _tune():
    _quiet_ray_env()
    from ray import tune

    return tune


def make_trainable(results_dir: str, metric: Optional[str], objective: str, mode: str, cpus: float, gpus: float):
    """The Tune trainable class for a study (bound to its results dir and objective)."""
    tune = _tune()

    class GanTrainable(tune.Trainable):
        """One ganbench trial as a Tune Trainable: ``step`` trains to the next evaluation
        and reports it; Tune checkpoints point at the trial engine's own checkpoint."""

        def setup(self, config: Dict[str, Any]) -> None:
            self._configure(config)

        def _configure(self, config: Dict[str, Any]) -> None:
            # Opening the record waits for the first step: Tune may construct an actor
            # for a trial and then run that trial on another (cached) actor, and only the
            # actor that trains may touch the record.
            self.payload = config["plan"]
            self.gb_id = self.payload["trial_id"]
            self.trial, self.finished, self.error, self.lock = None, None, None, None
            self.opened = False

        def _open(self) -> None:
            from harness.spec import parse_trial
            from harness.trial import Trial

            if self.opened:
                return
            self.opened = True
            payload = self.payload
            record = TrialRecord(Path(results_dir) / "trials" / self.gb_id)
            record.root.mkdir(parents=True, exist_ok=True)
            self.lock = _lock_record(record.root)
            previous = record.status()
            if previous and previous["status"] == "failed":
                # failed is final: report it again instead of training again
                self.error = previous.get("error") or "failed"
                return
            atomic_write_json(record.root / "study_trial.json", {
                "trial_id": self.gb_id, "phase": payload["phase"], "labels": payload["labels"],
                "overrides": payload.get("overrides", {}), "tune_trial_id": self.trial_id,
            })
            attempt: Dict[str, Any] = {"time": time.time(), "host": socket.gethostname(), "pid": os.getpid()}
            try:
                self.trial = Trial(parse_trial(payload["config"]), record.root)
                self.finished = self.trial.start()
                attempt.update(resumed_from=self.trial.iteration,
                               finished=self.finished.status if self.finished else None)
            except Exception as err:  # data, weights or a source model that fail to load
                self._fail(record, err)
                attempt["error"] = self.error
            finally:
                with open(record.root / "attempts.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(attempt) + "\n")

        def _fail(self, record: TrialRecord, err: Exception) -> None:
            import traceback

            self.error = f"{type(err).__name__}: {err}"
            current = record.status() or {}
            if current.get("status") != "failed":  # Trial.advance records its own failures
                record.set_status("failed", iteration=self.trial.iteration if self.trial else 0,
                                  error=self.error, traceback=traceback.format_exc())

        def step(self) -> Dict[str, Any]:
            # A trial that raises ends with a ``failed`` result instead of an exception:
            # Tune's FailureConfig retries are for dead workers and nodes, and a
            # deterministic error would only fail again.
            self._open()
            if self.error is None and self.finished is None:
                try:
                    self.finished = self.trial.advance(self.trial.next_eval_iteration())
                except Exception as err:
                    self._fail(self.trial.record, err)
            return self._result()

        def _result(self) -> Dict[str, Any]:
            t = self.trial
            row = (t.last_report if t is not None else None) or {}
            status = "failed" if self.error else (self.finished.status if self.finished else "running")
            result: Dict[str, Any] = {
                "trial": self.gb_id,
                "iteration": t.iteration if t is not None else 0,
                "wall_s": row.get("wall_s", 0.0),
                "train_s": row.get("train_s", 0.0),
                "status": status,
                "metrics": dict(row.get("metrics") or {}),
                "best": dict(row.get("best") or {}),
                "done": status != "running",
            }
            if self.error:
                result["error"] = self.error
            if metric is not None:
                result["objective"] = st.objective_value(row, metric, objective, mode)
            return result

        def save_checkpoint(self, checkpoint_dir: str) -> None:
            if self.trial is None:
                return
            if self.finished is None and self.error is None:
                self.trial.checkpoint_now()
            from harness import checkpoint as ckpt

            manifest = ckpt.latest_manifest(self.trial.record.checkpoints_dir)
            atomic_write_json(Path(checkpoint_dir) / POINTER, {
                "trial_id": self.gb_id, "record": str(self.trial.record.root),
                "iteration": self.trial.iteration, "manifest": manifest,
            })

        def load_checkpoint(self, checkpoint_dir: str) -> None:
            # The trial engine already resumed from its record's newest good checkpoint
            # in setup; the Tune checkpoint only says which iteration that must reach.
            self._open()
            file = Path(checkpoint_dir) / POINTER
            if self.trial is None or not file.exists():
                return
            manifest = json.loads(file.read_text()).get("manifest") or {}
            if self.finished is None and self.trial.iteration < int(manifest.get("iteration", 0)):
                raise RuntimeError(
                    f"trial {self.gb_id}: {self.trial.record.root} holds no checkpoint at iteration "
                    f"{manifest.get('iteration')} although one was written there; on a multi-node cluster the "
                    "results directory must be on storage every node shares (NFS or similar)")

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
            self.trial = None
            if getattr(self, "lock", None) is not None:
                self.lock.close()  # releases the flock
                self.lock = None

    resources: Dict[str, float] = {"cpu": cpus}
    if gpus:
        resources["gpu"] = gpus
    return tune.with_resources(GanTrainable, resources)


def _lock_record(root: Path, wait_s: float = 120.0):
    """An exclusive flock on ``root/.lock`` for as long as this actor trains the trial: a
    restarted trial waits for a stale actor that still holds it (the OS frees the lock of
    a dead process) instead of writing the record from two processes."""
    import fcntl

    fh = open(root / ".lock", "a")
    deadline = time.time() + wait_s
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except OSError:
            if time.time() > deadline:
                fh.close()
                raise RuntimeError(f"{root} is held by another process for over {wait_s:.0f} s "
                                   "(two actors training one trial?)") from None
            time.sleep(0.2)


# ------------------------------------------------------------------ console progress
def _progress_callback(study_name: str, phase: str, metric: Optional[str], mode: str, total: Optional[int],
                       out: Callable):
    tune = _tune()

    class StudyProgress(tune.Callback):
        def __init__(self):
            self.state: Dict[str, str] = {}
            self.best: Optional[float] = None
            self.best_id = ""
            self.last_print = 0.0

        def _line(self, phase: str) -> None:
            counts = {s: sum(1 for v in self.state.values() if v == s)
                      for s in ("completed", "diverged", "stopped", "failed", "running")}
            done = counts["completed"] + counts["diverged"] + counts["stopped"] + counts["failed"]
            text = f"[{study_name}/{phase}] {done}/{total or '?'} done ({counts['completed']} completed"
            for key in ("stopped", "diverged", "failed"):
                if counts[key]:
                    text += f", {counts[key]} {key}"
            text += f"), {counts['running']} running"
            if self.best is not None and metric:
                text += f"; best {metric} {self.best:.4g} ({self.best_id})"
            out(text)
            self.last_print = time.time()

        def _track(self, trial, result) -> None:
            if metric and result and "objective" in result:
                value = result["objective"]
                if math.isfinite(value) and (self.best is None or (value < self.best if mode == "min"
                                                                   else value > self.best)):
                    self.best, self.best_id = value, result.get("trial", trial.trial_id)

        def on_trial_start(self, iteration, trials, trial, **info):
            self.state[trial.trial_id] = "running"
            self._line(phase)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.state[trial.trial_id] = "running"
            self._track(trial, result)
            if time.time() - self.last_print > 30:
                self._line(phase)

        def on_trial_complete(self, iteration, trials, trial, **info):
            result = trial.last_result or {}
            self._track(trial, result)
            status = result.get("status", "completed")
            self.state[trial.trial_id] = status if status != "running" else "stopped"
            self._line(phase)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.state[trial.trial_id] = "failed"
            self._line(phase)

    return StudyProgress()


# ------------------------------------------------------------------------- Ray session
@contextmanager
def ray_session(address: Optional[str] = None, quiet: bool = True) -> Iterator[None]:
    """Join ``address`` (or RAY_ADDRESS), else start an embedded local Ray — explicitly
    local (``ray.init()`` alone would join whatever cluster a stale session points at),
    without dashboard. Shut down only what this call started."""
    _quiet_ray_env()
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: Dict[str, Any] = {"logging_level": logging.WARNING if quiet else logging.INFO, "log_to_driver": not quiet}
    if address and address != "local":
        ray.init(address=address, **kwargs)
    else:
        ray.init(address="local", include_dashboard=False, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------- the runner
class StudyRunner:
    def __init__(self, study: st.StudySpec, results: os.PathLike, resume: bool = False,
                 out: Callable[[str], None] = print):
        self.study = study
        self.root = Path(results).resolve() / study.name
        self.resume = resume
        self.out = out
        self.plans = st.plan(study)  # validates everything before any scheduling
        self.mode = st.search_mode(study) if study.search else "min"
        self.metric = study.search.metric if study.search else None

    # -- results directory -------------------------------------------------------------
    def prepare(self) -> None:
        file = self.root / "study.yaml"
        as_run = self.study.to_dict()
        if file.exists():
            on_disk = yaml.safe_load(file.read_text())
            if on_disk != as_run:
                raise ConfigError("study", str(file), "the same study as the one already run there (its study.yaml "
                                  "differs; use another --results or another study name to keep both)")
            if not self.resume:
                raise ConfigError("--resume", False, f"--resume to continue the study in {self.root} (it has "
                                  "results; nothing is overwritten)")
        elif self.resume and any(self.root.glob("*")):
            raise ConfigError("--resume", True, f"a results directory holding this study's study.yaml ({file} "
                              "is missing)")
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(file, yaml.safe_dump(as_run, sort_keys=False))
        atomic_write_json(self.root / "plan.json", [{"trial_id": p.trial_id, "phase": p.phase, "labels": p.labels}
                                                     for p in self.plans])
        from harness.prepare import ensure_prerequisites

        ensure_prerequisites(self.study, self.plans, self.root, lambda line: self.out(f"[{self.study.name}] {line}"))

    # -- phases ------------------------------------------------------------------------
    def run(self) -> "Any":
        from harness.summary import write_summary

        if self.study.search is None:
            self._fit("grid", self.plans)
        else:
            self._fit("search", None)
            write_summary(self.root)
            if self.study.search.finalists is not None:
                self._fit("finalists", self._finalists())
        summary = write_summary(self.root)
        self.out(f"[{self.study.name}] summary: {self.root / 'summary.csv'} ({len(summary)} trials)")
        return summary

    def _finalists(self) -> List[st.TrialPlan]:
        from harness.summary import summarize

        frame = summarize(self.root)
        if len(frame):
            done = frame[(frame["phase"] == "search") & (frame["status"] == "completed")]
        else:
            done = frame
        s = self.study.search
        assert s is not None and s.finalists is not None
        ranked = done.sort_values("objective", ascending=self.mode == "min")
        picks = []
        for _, row in ranked.iterrows():
            if not math.isfinite(row["objective"]):
                continue
            info = json.loads((self.root / "trials" / row["trial_id"] / "study_trial.json").read_text())
            picks.append((row["trial_id"], info.get("overrides", {})))
        if not picks:
            self.out(f"[{self.study.name}] no search trial completed its budget: no finalists")
            return []
        if len(picks) < s.finalists.k:
            self.out(f"[{self.study.name}] only {len(picks)} search trial(s) completed the budget; "
                     f"finalists.k is {s.finalists.k} (ASHA stopped the rest)")
        plans = st.finalist_trials(self.study, picks)
        atomic_write_json(self.root / "finalists.json", [
            {"trial_id": p.trial_id, "from": p.labels["from"], "rank": p.labels["rank"], "seed": p.labels["seed"]}
            for p in plans])
        top = ranked.iloc[: s.finalists.k]
        self.out(f"[{self.study.name}] finalists from: " + ", ".join(
            f"{t} ({self.metric} {v:.4g})" for t, v in zip(top["trial_id"], top["objective"])))
        return plans

    def _trainable(self):
        s = self.study.search
        return make_trainable(str(self.root), self.metric, s.objective if s else "best", self.mode,
                              self.study.resources.cpus, self.study.resources.gpus)

    def _fit(self, phase: str, plans: Optional[List[st.TrialPlan]]) -> None:
        tune = _tune()
        from ray.tune import CheckpointConfig, FailureConfig, RunConfig, Tuner

        marker = self.root / "tune" / f".{phase}.done"
        if marker.exists():
            self.out(f"[{self.study.name}/{phase}] already complete")
            return
        if plans is not None and not plans:
            return
        storage = str(self.root / "tune")
        path = os.path.join(storage, phase)
        trainable = self._trainable()
        total = len(plans) if plans is not None else self.study.search.n_trials
        progress = _progress_callback(self.study.name, phase, self.metric, self.mode, total, self.out)
        param_space = None
        if plans is not None:
            param_space = {"plan": tune.grid_search([p.to_dict() for p in plans])}
        if self.resume and Tuner.can_restore(path):
            self.out(f"[{self.study.name}/{phase}] resuming from {path}")
            tuner = Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False, param_space=param_space)
            try:  # progress lines go to this driver's output, not the pickled one's
                tuner._local_tuner._run_config.callbacks = [progress]
            except AttributeError:
                pass
        else:
            run_config = RunConfig(
                name=phase, storage_path=storage, verbose=0, callbacks=[progress],
                failure_config=FailureConfig(max_failures=self.study.failures.max_retries),
                checkpoint_config=CheckpointConfig(checkpoint_frequency=1, checkpoint_at_end=True),
            )
            tune_config = self._tune_config(phase)
            kwargs = {"param_space": param_space} if param_space is not None else {}
            tuner = Tuner(trainable, tune_config=tune_config, run_config=run_config, **kwargs)
        self.out(f"[{self.study.name}/{phase}] {total} trials; results in {self.root}")
        tuner.fit()
        if phase == "search":
            self._fail_orphaned_optuna_trials()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def _fail_orphaned_optuna_trials(self) -> None:
        """A driver killed between Optuna's ask and Tune's next experiment snapshot leaves
        a RUNNING Optuna trial that no restored Tune trial owns (the restored searcher never
        saw it). Once the search phase has ended every trial Tune ran has been told, so a
        trial still RUNNING is such an orphan: tell it FAIL (no phantom running trial)."""
        import optuna

        try:
            ostudy = optuna.load_study(study_name=self.study.name, storage=f"sqlite:///{self.root / 'optuna.db'}")
        except KeyError:  # no study was created
            return
        for trial in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            ostudy.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            self.out(f"[{self.study.name}/search] optuna trial {trial.number} was asked but never run to the end "
                     "(the driver died before Tune recorded it): marked FAIL")
            # It may have started (its record says running): end that record too, or the
            # study would show a trial running for ever. Final, like a scheduler's stop.
            record = TrialRecord(self.root / "trials" / f"search-{trial.number:04d}")
            current = record.status()
            if record.root.is_dir() and (current is None or current.get("status") == "running"):
                record.set_status("stopped", iteration=(current or {}).get("iteration", 0),
                                  error="abandoned: the driver was killed while this trial ran and Ray Tune did not "
                                        "restore it; the search ran another trial in its place")

    def _tune_config(self, phase: str):
        from ray.tune import TuneConfig

        res = self.study.resources
        common: Dict[str, Any] = {
            "reuse_actors": True,
            "trial_name_creator": lambda t: t.config["plan"]["trial_id"],
            "trial_dirname_creator": lambda t: t.config["plan"]["trial_id"],
        }
        if res.max_concurrent:
            common["max_concurrent_trials"] = res.max_concurrent
        if phase != "search":
            return TuneConfig(num_samples=1, **common)
        s = self.study.search
        assert s is not None
        if not res.max_concurrent:
            # With a searcher Tune starts trials one at a time unless told how many may run.
            common["max_concurrent_trials"] = _cluster_slots(res)
        return TuneConfig(num_samples=s.n_trials, search_alg=self._searcher(), scheduler=self._scheduler(), **common)

    def _searcher(self):
        import optuna

        s = self.study.search
        assert s is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if s.sampler.name == "tpe":
            sampler = optuna.samplers.TPESampler(seed=s.sampler.seed)
        else:
            sampler = optuna.samplers.RandomSampler(seed=s.sampler.seed)
        storage = optuna.storages.RDBStorage(f"sqlite:///{self.root / 'optuna.db'}")
        return _optuna_search_class()(space=SearchSpace(self.study), metric="objective", mode=self.mode, sampler=sampler,
                            study_name=self.study.name, storage=storage)

    def _scheduler(self):
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

        s = self.study.search
        assert s is not None
        if s.scheduler.name == "none":
            return FIFOScheduler()
        time_attr, horizon, grace = st.asha_settings(self.study)
        return ASHAScheduler(time_attr=time_attr, metric="objective", mode=self.mode, max_t=horizon,
                             grace_period=grace, reduction_factor=s.scheduler.reduction_factor)


def _optuna_search_class():
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class PruningAwareOptunaSearch(OptunaSearch):
        """Tells Optuna that a trial ASHA stopped early was PRUNED (Tune's OptunaSearch
        records it COMPLETE with its last value), so TPE and the Optuna dashboard see it as
        the partial run it is (a trial still ``running`` in its last result was stopped);
        a trial that raised is told FAIL."""

        def on_trial_complete(self, trial_id, result=None, error=False):
            status = (result or {}).get("status")
            if (result and not error and status in ("running", "failed")
                    and trial_id in self._ot_trials and trial_id not in self._completed_trials):
                state = TrialState.PRUNED if status == "running" else TrialState.FAIL
                try:
                    self._ot_study.tell(self._ot_trials[trial_id], state=state)
                except Exception as exc:  # same tolerance as the parent class
                    logging.getLogger(__name__).warning(exc)
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result=result, error=error)

    return PruningAwareOptunaSearch


class SearchSpace:
    """Optuna define-by-run space of a study (a plain class: Tune pickles its searcher)."""

    def __init__(self, study: st.StudySpec):
        self.study = study

    def __call__(self, trial) -> Dict[str, Any]:
        overrides = st.suggest(self.study, trial)
        ot_trial = getattr(trial, "ot_trial", trial)  # Tune passes a wrapper around it
        return {"plan": st.search_trial(self.study, int(ot_trial.number), overrides).to_dict()}


def _cluster_slots(res: st.ResourcesSpec) -> int:
    import ray

    total = ray.cluster_resources()
    slots = int(total.get("CPU", 1) // res.cpus)
    if res.gpus:
        slots = min(slots, int(total.get("GPU", 0) // res.gpus))
    return max(1, slots)


def run_study(study: st.StudySpec, results: os.PathLike = "results", address: Optional[str] = None,
              resume: bool = False, out: Callable[[str], None] = print):
    """Validate, then run (or resume) ``study`` on Ray; returns the summary DataFrame."""
    runner = StudyRunner(study, results, resume=resume, out=out)
    runner.prepare()  # refuse a clashing results directory before Ray starts
    with ray_session(address):
        return runner.run()
