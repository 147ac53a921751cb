"""A trial of N data-parallel workers in a Ray Tune study: Ray Train's TorchTrainer inside
a Tune function trainable (imports Ray).

Tune runs :func:`train_workers` for the trial. It holds no CPU or GPU itself (the runner
limits how many such trials run at once, since Tune cannot see their workers'
resources): it starts a TorchTrainer of ``resources.workers`` workers, each with
``resources.cpus`` CPUs and ``resources.gpus`` GPUs, as one placement group (gloo on CPU,
NCCL on CUDA), and waits for it. Every worker runs :func:`worker_loop`:

- rank 0 opens the trial as a one-process trial does (:func:`harness.trainable.open_trial`:
  the record's lock, the attempt, the assets) and starts or resumes it; its state goes to
  every other worker (:mod:`harness.distributed`), which never reads or writes the record;
- after each evaluation every worker calls ``ray.train.report``; Tune gets rank 0's
  result through Ray Train's ``TuneReportCallback``, so schedulers (ASHA) and searchers
  (Optuna) see a multi-worker trial as any other.

Failures. A killed worker or node ends its peers' collectives with an error that is not
the trial's: Ray Train restarts the whole group (up to ``failures.max_retries`` times)
and every rank resumes from rank 0's newest checkpoint. A trial that raises is recorded
``failed`` by rank 0, which then ends its group; the restarted group finds the record
failed and reports that (failed is final). When Ray Train gives up, the trial is
recorded failed with Ray Train's error. A trial a scheduler stops dies with its
trainable; the driver then records it ``stopped`` (:func:`end_stopped`).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable

from harness.distributed import Workers, pack_state
from harness.trainable import LOCK_WAIT_S, RunSettings, fetch_assets, open_trial, record_failure, tune_result


def worker_loop(config: Dict[str, Any]) -> None:
    """One worker of a trial (Ray Train's ``train_loop_per_worker``)."""
    import torch
    from ray import train

    run: RunSettings = config["run"]
    payload = config["plan"]
    gb_id = payload["trial_id"]
    if str(payload["config"].get("device", "cpu")).startswith("cuda"):
        from ray.train.torch import get_device

        torch.cuda.set_device(get_device())  # "cuda" is this worker's GPU
    workers = Workers.from_process_group()
    study = run.study_record()
    trial = finished = error = lock = None
    try:
        if workers.writer:
            before = workers.shares
            trial, finished, error, lock = open_trial(run, study, payload, config["tune_trial_id"], workers)
            if error is not None:
                if workers.shares != before:  # the others already train: end the group (restarted as failed)
                    raise RuntimeError(f"trial {gb_id}: {error}")
                workers.share(pack_state({"status": "failed", "iteration": 0}, None))  # the others stop too
        else:
            from harness.spec import parse_trial
            from harness.trial import Trial

            fetch_assets(run, study)
            trial = Trial(parse_trial(payload["config"]), study.trial(gb_id), workers=workers)
            finished = trial.start()
        reported = False  # every worker reports as often as the others (Ray Train gathers them)
        while error is None and finished is None:
            finished = trial.advance(trial.next_eval_iteration())
            train.report(_worker_result(run, gb_id, trial, finished, None, workers))
            reported = True
        if not reported:  # finished or failed before training: said once
            train.report(_worker_result(run, gb_id, trial, finished, error, workers))
    finally:
        if trial is not None:
            trial.close()
        if lock is not None:
            lock.release()


def _worker_result(run: RunSettings, gb_id: str, trial: Any, finished: Any, error: Any,
                   workers: Workers) -> Dict[str, Any]:
    """A worker's report: rank 0's Tune result, without ``done`` (the trial ends when
    ``fit`` returns; a result saying done would make Tune end the trainable, and with it
    the workers' placement group, while Ray Train still winds them down)."""
    if not workers.writer:
        return {}
    result = tune_result(run, gb_id, trial, finished, error)
    del result["done"]
    return result


def train_workers(config: Dict[str, Any], run: RunSettings = None, workers: int = 2, cpus: float = 1.0,
                  gpus: float = 0.0, max_failures: int = 0) -> None:
    """The Tune function trainable of a trial of ``workers`` workers."""
    from ray import train, tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    payload = config["plan"]
    gb_id = payload["trial_id"]
    context = tune.get_context()
    per_worker: Dict[str, float] = {"CPU": cpus}
    if gpus:
        per_worker["GPU"] = gpus
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={"run": run, "plan": payload, "tune_trial_id": context.get_trial_id()},
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
        scaling_config=train.ScalingConfig(num_workers=workers, use_gpu=bool(gpus), resources_per_worker=per_worker),
        run_config=train.RunConfig(name=f"{gb_id}-workers", storage_path=context.get_trial_dir(),
                                   callbacks=[TuneReportCallback()],
                                   failure_config=train.FailureConfig(max_failures=max_failures)),
    )
    try:
        trainer.fit()
    except Exception as err:  # Ray Train gave up on the workers
        record = run.study_record().trial(gb_id)
        lock = record.lock(f"trial {gb_id}", "a trial directory", wait_s=LOCK_WAIT_S)
        try:
            record.pull()
            ended = (record.status() or {}).get("status") not in (None, "running")
            if not ended:  # an end the workers recorded (completed, failed, ...) stands; Tune has its result
                error = record_failure(record, None, err)
        finally:
            lock.release()
        if not ended:
            tune.report(tune_result(run, gb_id, None, None, error))


def end_stopped(run: RunSettings, results: Iterable[Any]) -> int:
    """Record ``stopped`` the multi-worker trials a scheduler stopped (Tune's last result
    says running; the record too, since the workers died with their trainable)."""
    study = run.study_record()
    ended = 0
    for result in results:
        metrics = getattr(result, "metrics", None) or {}
        if metrics.get("status") != "running" or "trial" not in metrics:
            continue
        record = study.trial(metrics["trial"])
        current = record.status() or {}
        if current.get("status") != "running":
            continue
        lock = record.lock(f"trial {metrics['trial']}", "a trial directory", wait_s=LOCK_WAIT_S)
        try:
            record.pull()
            current = record.status() or {}
            if current.get("status") == "running":
                record.set_status("stopped", iteration=current.get("iteration", 0), best=metrics.get("best", {}))
                ended += 1
        finally:
            lock.release()
    return ended
