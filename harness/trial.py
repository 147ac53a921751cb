"""One trial: build from a TrialSpec, train, evaluate, checkpoint, report.

No Ray here: the study runner wraps :class:`Trial` in a Ray Tune trainable
(:mod:`harness.trainable`), and ``ganbench trial`` calls :func:`run_trial` in-process.
Data flows one way::

    TrialSpec -> build (harness.build: data, G, D, G_ema, optimizers, variants) -> train loop
              -> evaluate every eval.every (harness.reporting) -> report row -> TrialRecord

The loop's counters, timers and RNGs are one :class:`TrainingState`, checkpointed as one.
Rerunning on the same directory resumes from the last checkpoint that verifies: the
metrics series is truncated back to that checkpoint's iteration, so it has neither
duplicated nor missing iterations, and all RNG states are restored, so on the same
machine the resumed run computes the same losses as an uninterrupted one.

One process at a time writes a trial's folder: :meth:`Trial.start` takes its lock
(:mod:`harness.locks`) and refuses, naming the holder, when another live process has it.
A resume refuses data whose fingerprint differs from the data the trial started on
(unless ``allow_new_data``, which records the change in env.json), and refuses to start
over when checkpoints exist but none loads (:func:`harness.checkpoint.load_latest`).
"""
from __future__ import annotations

import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from harness import checkpoint as ckpt
from harness import locks, performance
from harness.clocks import compute_clock
from harness.build import build_models, count_parameters, model_info, resolve_device, seed_everything
from harness.data import TrainingData, load_image_set
from harness.distributed import SOLO, Workers, attach, pack_state, unpack_state
from harness.errors import ConfigError
from harness.metrics import check_sizes as check_metric_sizes, prepare as prepare_metrics
from harness.precision import apply_backend_switches
from harness.reporting import GRID_SIZE, Reporter, ReportCallback, environment, host_load, postfix, progress_bar
from harness.spec import TrialSpec, parse_trial
from harness.steps import Models, Sampler, all_finite, discriminator_step, generator_step, update_ema
from harness.store import TrialRecord
from harness.training_state import TrainingState

__all__ = ["GRID_SIZE", "Trial", "TrialResult", "count_parameters", "resolve_device", "run_trial", "seed_everything"]


@dataclass
class TrialResult:
    status: str
    iteration: int
    out_dir: Path
    last_report: Optional[Dict[str, Any]] = None
    error: Optional[str] = None


class Trial:
    """A trial being trained: its spec, record, built parts, state and reporter."""

    def __init__(self, spec: TrialSpec, out_dir: "os.PathLike | TrialRecord", callbacks: Optional[List[ReportCallback]] = None,
                 progress: bool = False, lock: Optional[locks.FileLock] = None, allow_new_data: bool = False,
                 tracking: Optional[Dict[str, Any]] = None, workers: Workers = SOLO):
        self.spec = spec
        self.workers = workers  # data-parallel workers (harness.distributed): rank 0 alone writes the record
        # a folder, or a record (a study's trial on object storage is a TrialRecord with a remote)
        self.record = out_dir if isinstance(out_dir, TrialRecord) else TrialRecord(out_dir)
        self.callbacks = list(callbacks or [])
        self.progress = progress
        # the folder's lock: given (a Ray actor that waited for it) or taken by start()
        self.lock, self._own_lock = lock, lock is None
        # resume on data whose fingerprint differs from the data the trial started on
        self.allow_new_data = allow_new_data
        # who the trial is to its trackers: study, trial (its id), phase, labels, parents
        self.tracking_context = dict(tracking or {})
        self.tracking: Any = None  # harness.tracking.Tracking, opened by start()
        self.state = TrainingState()
        self.last_report: Optional[Dict[str, Any]] = None
        # built by build() (start() calls it): the parts, then what evaluates and reports
        self.device: Optional[torch.device] = None
        self.data: Optional[TrainingData] = None
        self.models: Optional[Models] = None
        self.transfer: Any = None
        self.performance: Dict[str, Any] = {}
        self.sampler: Optional[Sampler] = None
        self.reporter: Optional[Reporter] = None
        self.stage = None
        self._stop = False

    # the counters the study runner and tests read
    @property
    def iteration(self) -> int:
        return self.state.iteration

    @property
    def best(self) -> Dict[str, float]:
        return self.state.best

    @property
    def eval_s(self) -> float:
        return self.state.eval_s

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        spec = self.spec
        self.device = resolve_device(spec)
        self.state.clock = compute_clock(self.device, self.state.clock.seconds if self.state.clock else 0.0)
        torch.set_num_threads(spec.threads)
        switches = apply_backend_switches(spec.performance, self.device)
        seed_everything(spec.seed)
        self.data = TrainingData(load_image_set(spec.dataset), self.device, hflip=spec.dataset.hflip)
        if self.workers.world != spec.optimization.workers:
            raise ConfigError("optimization.workers", spec.optimization.workers, f"{self.workers.world}: the processes "
                              "this trial runs in (a trial of N workers runs in a study with resources.workers: N)")
        built = build_models(spec, self.device)
        self.models, self.transfer = built.models, built.transfer
        attach(self.models, self.workers, spec.performance.sync_batchnorm)
        self.performance = {**switches, **performance.apply(spec.performance, self.models, self._probe_step)}
        if self.workers.distributed:
            self.performance["workers"] = self.workers.world
        # a metric whose options need more real images than the dataset has fails now, not at the first evaluation
        check_metric_sizes(spec.eval.metrics, spec.eval.n_samples, int(self.data.rgb.shape[0]),
                           spec.eval.metric_options, real_path=f"dataset {spec.dataset.name}")
        prepare_metrics(spec.eval.metrics, self.device)
        self.sampler = Sampler(spec.seed)
        self.reporter = Reporter(spec, self.record, self.models.G, self.models.G_ema, self.device, self.callbacks)

    def _probe_step(self, models: Models) -> None:
        """One D and one G step of ``models`` (a copy) on throw-away draws: what a
        compiled model must survive before the trial trusts it."""
        o = self.spec.optimization
        sampler = Sampler(self.spec.seed)
        discriminator_step(models, self.data, sampler, o.batch_size, 1, 0, self.device)
        generator_step(models, sampler, o.batch_size, 1, 0, self.device)

    def describe(self) -> Dict[str, Any]:
        """Model sizes and batch arithmetic (as ``ganbench describe`` prints) and the data."""
        return {**model_info(self.spec, self.models.G, self.models.D), "dataset": self.data.name,
                "dataset_images": len(self.data), "dataset_fingerprint": self.data.fingerprint}

    # ------------------------------------------------------------- checkpoint
    def checkpoint_state(self) -> Dict[str, Any]:
        m = self.models
        return {
            **self.state.to_checkpoint(self.sampler.generator),
            "G": m.G.state_dict(),
            "D": m.D.state_dict(),
            "G_ema": m.G_ema.state_dict(),
            "opt_g": m.opt_g.state_dict(),
            "opt_d": m.opt_d.state_dict(),
            "augment": m.augment.state_dict(),
            "regularizers": [r.state_dict() for r in m.regularizers],
            "transfer": self.transfer.state_dict(),
            "precision": m.precision.state_dict(),
            "config": self.spec.to_dict(),
        }

    def load_checkpoint_state(self, state: Dict[str, Any]) -> None:
        m = self.models
        m.G.load_state_dict(state["G"])
        m.D.load_state_dict(state["D"])
        m.G_ema.load_state_dict(state["G_ema"])
        m.opt_g.load_state_dict(state["opt_g"])
        m.opt_d.load_state_dict(state["opt_d"])
        m.augment.load_state_dict(state["augment"])
        for reg, reg_state in zip(m.regularizers, state["regularizers"]):
            reg.load_state_dict(reg_state)
        self.transfer.load_state_dict(state["transfer"])
        m.precision.load_state_dict(state.get("precision") or {})
        self.state.load_checkpoint(state, self.sampler.generator)

    def save_checkpoint(self) -> None:
        self.record.save_checkpoint(self.iteration, self.checkpoint_state(), keep=self.spec.keep_checkpoints)

    def wall_s(self) -> float:
        return self.state.wall_s()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ---------------------------------------------------------------- report
    def evaluate(self) -> Dict[str, Any]:
        """The trial's metrics on its EMA generator now (values, protocols, directions)."""
        return self.reporter.evaluate(self.data.rgb, self.data.rgb_fingerprint)

    def report(self, evaluation: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        o, st = self.spec.optimization, self.state
        wall_s, compute_s = st.wall_s(), st.compute_s()
        row: Dict[str, Any] = {
            "iteration": st.iteration,
            "samples_seen": st.samples_seen,
            "wall_s": round(wall_s, 4),
            "train_s": round(wall_s - st.overhead_s, 4),
            "compute_s": None if compute_s is None else round(compute_s, 4),
            "clock": o.clock,
            "eval_s": round(st.eval_s, 4),
            **host_load(),
            "losses": st.take_mean_losses(),
            "effective_batch": o.effective_batch_d,
            "effective_batch_g": o.effective_batch_g,
            "stage": self.stage,
            "performance": self.performance,
            "augment": self.models.augment.stats(),
        }
        if self.models.precision.scaled:
            row["amp"] = self.models.precision.stats()  # fp16: each scaler's scale and skipped steps
        reg_stats = {k: v for r in self.models.regularizers for k, v in r.stats().items()}
        if reg_stats:
            row["regularizers"] = reg_stats
        if evaluation is not None:
            st.update_best(evaluation["values"], evaluation["higher_is_better"])
        self.last_report = self.reporter.write(row, evaluation, st.best, self)
        return row

    # ------------------------------------------------------------------- run
    def run(self) -> TrialResult:
        """Train to the end of the budget (resuming from the record if it has a checkpoint)."""
        try:
            finished = self.start()
            if finished is not None:
                return finished
            bar = progress_bar(self.spec.optimization.iteration_limit, self.iteration) if self.progress else None
            try:
                result = self.advance(None, bar)
            finally:
                if bar is not None:
                    bar.close()
        finally:
            self.close()
        assert result is not None
        return result

    def close(self) -> None:
        """Let the trackers go and release the folder's lock if this trial took it (start() did)."""
        if self.tracking is not None:
            self.tracking.close()  # a no-op once the trial finished them
        if self._own_lock and self.lock is not None:
            self.lock.release()
            self.lock = None

    def _take_lock(self) -> None:
        if self.lock is not None:
            return
        self.lock = self.record.lock("out", "a trial directory")
        self.record.pull()  # on object storage: start from the store's record (whoever locks, pulls)
        if self.lock.taken_over:
            warnings.warn(f"{self.record.root}: took over the lock left by {locks.describe_holder(self.lock.taken_over)}"
                          ", which is no longer running", RuntimeWarning, stacklevel=3)

    def _check_data(self, iteration: int) -> None:
        ckpt.check_resumed_data(self.record, self.spec.dataset.name, self.data.fingerprint, len(self.data),
                           self.allow_new_data, iteration)

    def start(self) -> Optional[TrialResult]:
        """Build, then resume from the last checkpoint that verifies (or start fresh).

        Returns the finished result when the record already holds a completed or diverged
        trial (nothing to do), else None: the trial is ready for :meth:`advance`.
        """
        spec, record = self.spec, self.record
        if not self.workers.writer:
            return self._follow()
        self._take_lock()
        record.check_config(spec)
        previous = record.status()
        if previous and previous["status"] in ("completed", "diverged"):
            reports = record.reports()
            self.state.iteration = int(previous.get("iteration", 0))
            self.last_report = reports[-1] if reports else None
            if self.workers.distributed:
                self.workers.share(pack_state({"status": previous["status"], "iteration": self.iteration}, None))
            return TrialResult(previous["status"], self.iteration, record.root, self.last_report,
                               previous.get("error"))
        record.create()
        if self.models is None:
            self.build()
        self.last_report = None
        # Load on the CPU: RNG states must stay CPU byte tensors; load_state_dict copies
        # weights and optimizer state onto the parameters' device.
        state = ckpt.load_latest(record.checkpoints_dir, map_location="cpu", warn=self._warn)
        if state is not None:
            self._check_data(int(state["iteration"]))
            self.load_checkpoint_state(state)
            kept = record.truncate_reports(self.iteration)
            self.last_report = kept[-1] if kept else None
        else:
            if record.metrics_path.exists():  # killed before its first checkpoint: start over
                record.truncate_reports(0)
            record.write_config(spec.to_yaml())
            env = environment(spec, self.device)
            env.update(self.describe())
            env["dataset_info"] = self.data.info
            env["source_model"] = self.transfer.source_fingerprint()
            record.write_env(env)
        record.set_status("running", iteration=self.iteration, pid=os.getpid(), host=socket.gethostname())
        self._open_tracking()
        if self.workers.distributed:  # every worker resumes from rank 0's state
            self.workers.share(pack_state(None, self.checkpoint_state()))
        return self._begin()

    def _follow(self) -> Optional[TrialResult]:
        """A worker of rank > 0 starts from what rank 0 shares (never reading the record)."""
        shared = unpack_state(self.workers.share(None))
        if shared["finished"]:
            self.state.iteration = int(shared["finished"]["iteration"])
            return TrialResult(shared["finished"]["status"], self.iteration, self.record.root)
        if self.models is None:
            self.build()
        self.load_checkpoint_state(shared["state"])
        return self._begin()

    def _begin(self) -> None:
        self.workers.reseed(self.spec.seed, self.iteration)
        self.state.start_clock()
        self.stage = self.transfer.set_stage(self.models.G, self.models.D, self.iteration)
        self._stop = False
        return None

    def _open_tracking(self) -> None:
        from harness.tracking import RunInfo, Tracking

        ctx = self.tracking_context
        info = RunInfo(trial=ctx.get("trial") or self.spec.name, folder=self.record.root, config=self.spec.to_dict(),
                       study=ctx.get("study") or None, phase=ctx.get("phase"), labels=dict(ctx.get("labels") or {}),
                       parents=dict(ctx.get("parents") or {}), resumed_at=self.iteration)
        self.tracking = Tracking(self.spec.tracking, self.record, info)
        self.reporter.callbacks.append(self.tracking.on_report)

    def _end_tracking(self, status: str) -> None:
        if self.tracking is not None:
            self.tracking.finish(self.iteration, status, self.best, (self.last_report or {}).get("metrics", {}))

    def _warn(self, message: str) -> None:
        warnings.warn(f"{self.record.root}: {message}", RuntimeWarning, stacklevel=2)

    def advance(self, until: Optional[int] = None, bar=None) -> Optional[TrialResult]:
        """Train up to iteration ``until`` (None: to the end of the budget).

        Returns the result once the trial has finished (completed: the iteration or time
        budget is spent; diverged: a non-finite loss), else None. An exception marks the
        record ``failed`` with its error and propagates.
        """
        try:
            status = self._loop(until, bar)
        except Exception as err:
            if self.workers.writer and not self.workers.lost(err):  # a lost worker: restarted, not failed
                self.record.set_status("failed", iteration=self.iteration, error=f"{type(err).__name__}: {err}",
                                       traceback=traceback.format_exc())
                self._end_tracking("failed")
            raise
        if status is None:
            return None
        return TrialResult(status["status"], self.iteration, self.record.root, self.last_report,
                           status.get("error"))

    def next_eval_iteration(self) -> int:
        """The iteration of the next evaluation (or of the end of the budget)."""
        every, total = self.spec.eval.every, self.spec.optimization.iteration_limit
        if every <= 0:
            return total
        return min(total, (self.iteration // every + 1) * every)

    def checkpoint_now(self) -> None:
        """Write a checkpoint at the current iteration unless one exists already."""
        if ckpt.latest_iteration(self.record.checkpoints_dir) != self.iteration:
            self.save_checkpoint()

    def stop(self, status: str = "stopped") -> None:
        """Mark a trial that is not finished but will not continue (a scheduler stopped it)."""
        current = self.record.status() if self.workers.writer else None
        if current and current["status"] == "running":
            self.record.set_status(status, iteration=self.iteration, best=self.best, wall_s=self.wall_s())
            self._end_tracking(status)

    def _loop(self, until: Optional[int], bar) -> Optional[Dict[str, Any]]:
        spec, m = self.spec, self.models
        o = spec.optimization
        limit = o.iteration_limit
        total = limit if until is None else min(until, limit)
        clock = self.state.clock
        while self.iteration < total and not self._stop:
            it = self.iteration
            if clock is not None:
                clock.begin()
            self.stage = self.transfer.set_stage(m.G, m.D, it)
            for module in (m.G, m.D, m.G_ema):
                module.set_progress(it)
            step_stats: Dict[str, torch.Tensor] = {}
            taken = True  # every optimizer step of this iteration was taken (fp16 skips some)
            for _ in range(o.d_steps):
                d_stats = discriminator_step(m, self.data, self.sampler, o.batch_size, o.accumulation.d, it,
                                             self.device)
                bad = all_finite(d_stats)
                if bad is not None and not m.precision.scaled:
                    return self._diverged(f"non-finite {bad} at iteration {it + 1}")
                taken &= m.precision.step("d", m.opt_d, finite=bad is None)
                self.state.samples_seen += o.effective_batch_d
                for k, v in d_stats.items():
                    step_stats[k] = step_stats.get(k, 0) + v / o.d_steps
            g_stats = generator_step(m, self.sampler, o.batch_size, o.accumulation.g, it, self.device)
            bad = all_finite(g_stats)
            if bad is not None and not m.precision.scaled:
                return self._diverged(f"non-finite {bad} at iteration {it + 1}")
            taken &= m.precision.step("g", m.opt_g, finite=bad is None)
            step_stats.update(g_stats)
            update_ema(m.G, m.G_ema, spec.ema.step_decay(spec.optimization.effective_batch_g)
                       if it >= spec.ema.start else 0.0)
            if clock is not None:
                clock.end()
            self.state.iteration = it + 1
            if taken:  # a skipped fp16 step's losses are overflowed numbers, not the trial's
                self.state.add_losses(step_stats)
            failure = m.precision.failure()
            if failure is not None:
                return self._diverged(f"{failure} at iteration {it + 1}")
            self._after_step(bar)
        if self.iteration < limit and not self._stop:
            return None  # paused at ``until``; more to train
        if self.workers.writer:
            self.record.set_status("completed", iteration=self.iteration, best=self.best,
                                   last=(self.last_report or {}).get("metrics", {}), wall_s=self.wall_s(),
                                   budget=self.budget_reason())
            self._end_tracking("completed")
        return {"status": "completed"}

    def budget_reason(self) -> str:
        """Which budget ended the trial: seconds, samples or iterations."""
        o = self.spec.optimization
        if self._stop and self.iteration < o.iteration_limit:
            return "seconds"
        return "samples" if o.iteration_limit < o.iterations else "iterations"

    def _time_up(self) -> bool:
        o = self.spec.optimization
        return o.time_budget_s is not None and self.state.budget_s(o.clock) >= o.time_budget_s

    def _after_step(self, bar) -> None:
        spec, i = self.spec, self.iteration
        # A time budget ends the trial after the step that spends it: that step is then
        # the last one (evaluated, checkpointed) just as the final iteration would be.
        if not self._stop and spec.optimization.time_budget_s is not None:
            self._stop = self.workers.agree(self._time_up())  # rank 0's clock decides for all workers
        last = i == spec.optimization.iteration_limit or self._stop
        do_eval = last or (spec.eval.every > 0 and i % spec.eval.every == 0)
        do_log = do_eval or i % spec.log_every == 0
        do_samples = spec.sample_every > 0 and (i % spec.sample_every == 0 or last)
        do_ckpt = last or i % spec.checkpoint_every == 0
        if not self.workers.writer:
            if do_ckpt:
                self.workers.reseed(spec.seed, i)  # as rank 0 does after its checkpoint
            return
        if not (do_log or do_samples or do_ckpt):
            if bar is not None:
                bar.update(1)
            return
        self._sync()
        t0 = time.perf_counter()
        evaluation = None
        if do_eval:
            evaluation = self.evaluate()
            self.state.eval_s += time.perf_counter() - t0
        if do_samples:
            grid = self.reporter.save_samples(self.iteration)
            if self.tracking is not None:
                self.tracking.image(self.iteration, grid)
        self.state.overhead_s += time.perf_counter() - t0
        if do_log:
            row = self.report(evaluation)
            if bar is not None:
                bar.set_postfix_str(postfix(row), refresh=False)
        t1 = time.perf_counter()
        if do_ckpt:
            self.save_checkpoint()
            self.workers.reseed(spec.seed, i)  # each worker's own streams from here, as a resume draws them
        self.state.overhead_s += time.perf_counter() - t1
        if bar is not None:
            bar.update(1)

    def _diverged(self, error: str) -> Dict[str, Any]:
        if self.workers.writer:
            self.record.set_status("diverged", iteration=self.iteration, error=error, best=self.best)
            self._end_tracking("diverged")
        return {"status": "diverged", "error": error}


def run_trial(spec: Any, out_dir: os.PathLike, callbacks: Optional[List[ReportCallback]] = None,
              progress: bool = False, allow_new_data: bool = False) -> TrialResult:
    """Run (or resume) one trial into ``out_dir``; ``spec`` is a TrialSpec or a mapping."""
    if not isinstance(spec, TrialSpec):
        spec = parse_trial(spec)
    return Trial(spec, out_dir, callbacks, progress, allow_new_data=allow_new_data).run()
