"""Run a study on Ray Tune: one Tune trial per ganbench trial.

    Plan ---> TrialPlans (grid) | Optuna define-by-run space (search)
         --Tuner--> GanTrainable (harness.trainable: a tune.Trainable around harness.trial.Trial)
              --records--> <results>/<study>/trials/<trial_id>/  (the trial engine's record)
              --summary--> <results>/<study>/summary.csv|json

The results folder's layout is :class:`harness.store.StudyRecord`'s; the trainable is
:mod:`harness.trainable`; every Ray/Optuna internal sits in :mod:`harness.tune_adapter`.

Failures: a worker or node that dies mid-trial makes Tune restart the trial from its last
Tune checkpoint (``failures.max_retries`` times); the trial engine resumes from its own
checksummed checkpoint in the record, so its series stays continuous. A trial that
raises is recorded ``failed`` and ends with a final ``failed`` result, not an exception, so
it is not retried (retrying a deterministic error only fails again); a diverged trial ends
normally too.

Storage: the results location is a folder every node mounts at the same path (NFS or
the like; Ray >= 2.7 asks the same of Tune's storage_path) or object storage
(``s3://bucket/prefix`` or any ``pyarrow.fs`` URI: records are staged locally and
published, see :mod:`harness.store`; Tune stores its experiment there through the same
filesystem). Before scheduling, the runner checks the location answers (a missing
bucket, refused credentials: one ConfigError), uploads the prepared datasets and source
models to the store (:mod:`harness.assets`), and checks that every Ray node can read
and write the location and its inputs (:mod:`harness.cluster`).
"""
from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from harness import study as st
from harness.errors import ConfigError
from harness.store import StudyRecord

PHASES = ("grid", "search", "finalists")


def _tune():
    from harness.tune_adapter import check_versions, tune

    check_versions()
    return tune


# ------------------------------------------------------------------ console progress
def _progress_callback(study_name: str, phase: str, metric: Optional[str], mode: str, total: Optional[int],
                       out: Callable, on_complete: Callable[[], None] = lambda: None):
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
            on_complete()

        def on_trial_error(self, iteration, trials, trial, **info):
            self.state[trial.trial_id] = "failed"
            self._line(phase)

    return StudyProgress()


# ------------------------------------------------------------------------- Ray session
# Ray starts its workers at niceness 15 so that a driver stays responsive; a trial is the
# work itself, and at niceness 15 any ordinary process on the machine takes ~97 % of a
# core from it (measured: a quickstart trial beside two busy loops on 2 cores got 11.7 s
# of CPU in 394 s). The embedded Ray runs trials at niceness 0, level with other work,
# unless RAY_worker_niceness says otherwise; a cluster keeps its own setting.
WORKER_NICENESS = 0


def embedded_system_config() -> Dict[str, Any]:
    """Ray system settings of the embedded local Ray."""
    if "RAY_worker_niceness" in os.environ:
        return {}
    return {"worker_niceness": WORKER_NICENESS}


@contextmanager
def ray_session(address: Optional[str] = None, quiet: bool = True) -> Iterator[None]:
    """Join ``address`` (or RAY_ADDRESS), else start an embedded local Ray — explicitly
    local (``ray.init()`` alone would join whatever cluster a stale session points at),
    without dashboard. Shut down only what this call started."""
    _tune()
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: Dict[str, Any] = {"logging_level": logging.WARNING if quiet else logging.INFO, "log_to_driver": not quiet}
    if address and address != "local":
        from harness.cluster import worker_env

        # workers on other nodes get ganbench's settings (cache, zoo, staging, S3 endpoint)
        ray.init(address=address, runtime_env={"env_vars": worker_env()}, **kwargs)
    else:
        ray.init(address="local", include_dashboard=False, _system_config=embedded_system_config(), **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------- the runner
class StudyRunner:
    """Runs one planned study on Ray: prepares its folder, then each phase as a Tuner."""

    def __init__(self, plan: Union[st.Plan, st.StudySpec], results: os.PathLike, resume: bool = False,
                 out: Callable[[str], None] = print, allow_new_data: bool = False, ray_train: bool = False):
        self.plan = plan if isinstance(plan, st.Plan) else st.Plan.of(plan)  # validates before scheduling
        self.study = self.plan.study
        self.record = StudyRecord.at(results, self.study.name)
        self.root = self.record.root  # on object storage: the local staging copy
        self.assets: List[Dict[str, Any]] = []
        self.tracking_parents: Dict[str, str] = {}  # tracker -> the study's run (harness.tracking.study)
        self.resume = resume
        self.allow_new_data = allow_new_data
        self.out = out
        self.plans = self.plan.trials
        self.mode = self.plan.mode
        self.metric = self.plan.metric
        # Trials on Ray Train (harness.workers_trainable): N workers, or one with ray_train (gpucheck)
        self.ray_train = ray_train or self.study.resources.workers > 1

    # -- results directory -------------------------------------------------------------
    def check(self) -> Optional[Dict[str, Any]]:
        """Refuse a results location this study cannot use (unreachable, another study's,
        results without --resume) before anything is written; the study.yaml found there."""
        if self.record.remote is not None:
            self.record.remote.check()  # unreachable, unwritable, no bucket: refused before anything
            self.record.pull(samples=False)
        as_run = self.study.to_dict()
        on_disk = self.record.read_study()
        if on_disk is not None:
            if _identity(on_disk) != _identity(as_run) and _identity(_with_defaults(on_disk)) != _identity(as_run):
                raise ConfigError("study", str(self.record.study_path), "the same study as the one already run "
                                  f"there (its {StudyRecord.STUDY_FILE} differs; use another --results or another "
                                  "study name to keep both)")
            if not self.resume:
                raise ConfigError("--resume", False, f"--resume to continue the study in {self.record.where} (it "
                                  "has results; nothing is overwritten)")
        elif self.resume and not self.record.is_empty():
            raise ConfigError("--resume", True, f"a results directory holding this study's {StudyRecord.STUDY_FILE} "
                              f"({self.record.where}/{StudyRecord.STUDY_FILE} is missing)")
        return on_disk

    def prepare(self) -> None:
        on_disk = self.check()
        self.record.write_study(self.study.to_dict())
        self.record.write_plan([p.summary() for p in self.plans])
        from harness.prepare import prepare_study

        say = lambda line: self.out(f"[{self.study.name}] {line}")  # noqa: E731
        prepare_study(self.plan, self.record, say)
        if self.record.remote is not None:
            from harness import assets

            self.assets = assets.collect(self.plan.prerequisite_specs())
            assets.publish(self.assets, self.record, say)
            self.record.write_assets(self.assets)
        if on_disk is not None:
            self._check_resumed_data()

    def _check_resumed_data(self) -> None:
        """Before anything is scheduled: every trial that would resume from a checkpoint
        must find the data it started on (or the run says --allow-new-data)."""
        from harness.data import load_image_set
        from harness.spec import parse_trial
        from harness.checkpoint import check_resumed_data

        for rec in self.record.trial_records():
            status = (rec.status() or {}).get("status")
            if status not in (None, "running") or not rec.has_checkpoint():
                continue
            try:
                spec = parse_trial(rec.read_config())
            except ConfigError:
                continue
            data = load_image_set(spec.dataset)
            check_resumed_data(rec, spec.dataset.name, data.fingerprint, int(data.images.shape[0]),
                               self.allow_new_data, field=f"trial {rec.root.name}: dataset.name")

    # -- phases ------------------------------------------------------------------------
    def check_nodes(self) -> None:
        """Every Ray node can read and write the results location and read the inputs
        (harness.cluster), or the study is refused naming the node and the path."""
        from harness.assets import collect
        from harness.cluster import check_nodes

        # on a shared disk the files are hashed only when there are other nodes to compare
        probed = check_nodes(self.record, lambda: self.assets or collect(self.plan.prerequisite_specs()))
        if probed:
            self.out(f"[{self.study.name}] {probed} Ray nodes can read and write {self.record.where} and its inputs")

    def run(self) -> "Any":
        from harness.summary import write_summary
        from harness.tracking.study import StudyTracking, effective

        self.check_nodes()
        tracking = StudyTracking(effective(self.plan), self.record, self.study.name, self.out)
        self.tracking_parents = tracking.start()
        ended = "failed"
        try:
            if self.study.search is None:
                self._fit("grid", self.plans)
            else:
                self._fit("search", None)
                write_summary(self.record)
                if self.study.search.finalists is not None:
                    self._fit("finalists", self._finalists())
            ended = "completed"
        finally:
            tracking.end(ended)
        summary = write_summary(self.record)
        where = f"{self.record.where}/{StudyRecord.SUMMARY_CSV}" if self.record.remote else self.record.summary_csv
        self.out(f"[{self.study.name}] summary: {where} ({len(summary)} trials)")
        for warning in self.fairness_warnings():
            self.out(f"[{self.study.name}] WARNING: {warning}")
        return summary

    def fairness_warnings(self) -> List[str]:
        """Why the study's comparison may be unfair (harness.analysis.fairness)."""
        from harness.analysis.fairness import concerns
        from harness.analysis.results import FINISHED, load_study

        results = load_study(self.root)
        return concerns(results.rows(None, FINISHED))

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
            picks.append((row["trial_id"], self.record.trial_info(row["trial_id"]).get("overrides", {})))
        if not picks:
            self.out(f"[{self.study.name}] no search trial completed its budget: no finalists")
            return []
        if len(picks) < s.finalists.k:
            self.out(f"[{self.study.name}] only {len(picks)} search trial(s) completed the budget; "
                     f"finalists.k is {s.finalists.k} (ASHA stopped the rest)")
        plans = self.plan.finalist_trials(picks)
        self.record.write_finalists([
            {"trial_id": p.trial_id, "from": p.labels["from"], "rank": p.labels["rank"], "seed": p.labels["seed"]}
            for p in plans])
        top = ranked.iloc[: s.finalists.k]
        self.out(f"[{self.study.name}] finalists from: " + ", ".join(
            f"{t} ({self.metric} {v:.4g})" for t, v in zip(top["trial_id"], top["objective"])))
        return plans

    def _trainable(self):
        from harness.trainable import RunSettings, bind

        s = self.study.search
        uri = self.record.remote.uri if self.record.remote is not None else None
        run = RunSettings(str(self.root), self.metric, s.objective if s else "best", self.mode, self.allow_new_data,
                          results_uri=uri, assets=tuple(self.assets), study=self.study.name,
                          tracking_parents=tuple(sorted(self.tracking_parents.items())))
        self.run_settings = run
        return bind(run, self.study.resources, self.study.failures.max_retries, ray_train=self.ray_train)

    def _fit(self, phase: str, plans: Optional[List[st.TrialPlan]]) -> None:
        tune = _tune()
        from ray.tune import CheckpointConfig, FailureConfig, RunConfig, Tuner

        from harness.tune_adapter import set_restored_callbacks

        if self.record.phase_done(phase):
            self.out(f"[{self.study.name}/{phase}] already complete")
            return
        if plans is not None and not plans:
            return
        storage, filesystem = self.record.tune_storage()
        path = self.record.tune_phase(phase)
        trainable = self._trainable()
        total = len(plans) if plans is not None else self.study.search.n_trials
        publish_optuna = self._publish_optuna if phase == "search" else (lambda: None)
        progress = _progress_callback(self.study.name, phase, self.metric, self.mode, total, self.out, publish_optuna)
        param_space = None
        if plans is not None:
            param_space = {"plan": tune.grid_search([p.to_dict() for p in plans])}
        if self.resume and Tuner.can_restore(path, storage_filesystem=filesystem):
            self.out(f"[{self.study.name}/{phase}] resuming from {self.record.where}/{StudyRecord.TUNE_DIR}/{phase}")
            tuner = Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False, param_space=param_space, storage_filesystem=filesystem)
            set_restored_callbacks(tuner, [progress])  # progress lines go to this driver's output
        else:
            run_config = RunConfig(
                name=phase, storage_path=storage, storage_filesystem=filesystem, verbose=0, callbacks=[progress],
                failure_config=FailureConfig(max_failures=self.study.failures.max_retries),
                checkpoint_config=(CheckpointConfig() if self.ray_train  # resumes from its record alone
                                   else CheckpointConfig(checkpoint_frequency=1, checkpoint_at_end=True)),
            )
            tune_config = self._tune_config(phase)
            kwargs = {"param_space": param_space} if param_space is not None else {}
            tuner = Tuner(trainable, tune_config=tune_config, run_config=run_config, **kwargs)
        self.out(f"[{self.study.name}/{phase}] {total} trials; results in {self.record.where}")
        results = tuner.fit()
        if self.ray_train:  # the multi-worker trials a scheduler stopped
            from harness.workers_trainable import end_stopped

            end_stopped(self.run_settings, results)
        self.record.pull(samples=False)  # on object storage: the records as the nodes published them
        # (the summaries read this copy; prepare pulled it for a phase that was already done)
        if phase == "search":
            self._fail_orphaned_optuna_trials()
            publish_optuna()
        self.record.mark_phase_done(phase)

    def _publish_optuna(self) -> None:
        """On object storage: upload the Optuna database (SQLite, kept in the driver's
        staging copy) after every finished search trial and at the end of the search."""
        if self.record.remote is not None and self.record.optuna_path.exists():
            self.record.publish(self.record.optuna_path)

    def _fail_orphaned_optuna_trials(self) -> None:
        """A driver killed between Optuna's ask and Tune's next experiment snapshot leaves
        a RUNNING Optuna trial that no restored Tune trial owns (the restored searcher never
        saw it). Once the search phase has ended every trial Tune ran has been told, so a
        trial still RUNNING is such an orphan: tell it FAIL (no phantom running trial)."""
        import optuna

        try:
            ostudy = optuna.load_study(study_name=self.study.name, storage=self.record.optuna_url)
        except KeyError:  # no study was created
            return
        for trial in ostudy.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            ostudy.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            self.out(f"[{self.study.name}/search] optuna trial {trial.number} was asked but never run to the end "
                     "(the driver died before Tune recorded it): marked FAIL")
            # It may have started (its record says running): end that record too, or the
            # study would show a trial running for ever. Final, like a scheduler's stop.
            record = self.record.trial(st.TrialPlan.search_id(trial.number))
            current = record.status()
            if record.root.is_dir() and (current is None or current.get("status") == "running"):
                record.set_status("stopped", iteration=(current or {}).get("iteration", 0),
                                  error="abandoned: the driver was killed while this trial ran and Ray Tune did not "
                                        "restore it; the search ran another trial in its place")

    def _tune_config(self, phase: str):
        from ray.tune import TuneConfig

        res = self.study.resources
        common: Dict[str, Any] = {
            "reuse_actors": not self.ray_train,  # a multi-worker trial's trainable lives as long as its workers
            "trial_name_creator": lambda t: t.config["plan"]["trial_id"],
            "trial_dirname_creator": lambda t: t.config["plan"]["trial_id"],
        }
        if res.max_concurrent:
            common["max_concurrent_trials"] = res.max_concurrent
        elif self.ray_train:  # Tune does not see a multi-worker trial's resources (its workers hold them)
            common["max_concurrent_trials"] = _cluster_slots(res)
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

        from harness.tune_adapter import PruningAwareOptunaSearch

        s = self.study.search
        assert s is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if s.sampler.name == "tpe":
            sampler = optuna.samplers.TPESampler(seed=s.sampler.seed)
        else:
            sampler = optuna.samplers.RandomSampler(seed=s.sampler.seed)
        storage = optuna.storages.RDBStorage(self.record.optuna_url)
        return PruningAwareOptunaSearch(space=SearchSpace(self.plan), metric="objective", mode=self.mode,
                                        sampler=sampler, study_name=self.study.name, storage=storage)

    def _scheduler(self):
        from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

        s = self.study.search
        assert s is not None
        if s.scheduler.name == "none":
            return FIFOScheduler()
        time_attr, horizon, grace = st.asha_settings(self.study, self.plan.make_trial({}, self.study.seeds[0],
                                                                                      "search (base config)"))
        return ASHAScheduler(time_attr=time_attr, metric="objective", mode=self.mode, max_t=horizon,
                             grace_period=grace, reduction_factor=s.scheduler.reduction_factor)


class SearchSpace:
    """Optuna define-by-run space of a planned study (a plain class: Tune pickles its searcher)."""

    def __init__(self, plan: st.Plan):
        self.plan = plan

    def __call__(self, trial) -> Dict[str, Any]:
        overrides = st.suggest(self.plan.study, trial, self.plan.base.to_dict())
        ot_trial = getattr(trial, "ot_trial", trial)  # Tune passes a wrapper around it
        return {"plan": self.plan.search_trial(int(ot_trial.number), overrides).to_dict()}


def _cluster_slots(res: st.ResourcesSpec) -> int:
    import ray

    total = ray.cluster_resources()
    slots = int(total.get("CPU", 1) // (res.cpus * res.workers))
    if res.gpus:
        slots = min(slots, int(total.get("GPU", 0) // (res.gpus * res.workers)))
    return max(1, slots)


def _identity(as_run: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """What makes a study the same study: its trials' identity (harness.spec.identity, of
    the base and of the study's own trackers section)."""
    from harness.spec import identity

    if as_run is None:
        return None
    base = as_run.get("base")
    return {**identity(as_run), "base": identity(base) if isinstance(base, dict) else base}


def _with_defaults(as_run: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A study.yaml written by an older ganbench, with the fields added since at their
    defaults (so a study run before a new field existed still resumes); None if it no
    longer parses."""
    try:
        return st.parse_study(as_run).to_dict()
    except (ConfigError, TypeError, ValueError):
        return None


def run_study(plan: Union[st.Plan, st.StudySpec], results: os.PathLike = "results", address: Optional[str] = None,
              resume: bool = False, out: Callable[[str], None] = print, allow_new_data: bool = False, ray_train=False):
    """Validate, then run (or resume) a planned study on Ray; returns the summary DataFrame."""
    _tune()  # an untested Ray/Optuna is refused before anything is written or prepared
    runner = StudyRunner(plan, results, resume=resume, out=out, allow_new_data=allow_new_data, ray_train=ray_train)
    runner.check()  # refuse a clashing results directory before Ray starts
    with ray_session(address):
        from harness.cluster import check_placeable

        check_placeable(runner.study.resources)  # a trial no node can hold: refused before anything is written
        runner.prepare()
        return runner.run()
