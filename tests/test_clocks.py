"""The budget clocks' bookkeeping: what the compute clock counts and what it does not,
samples budgets, the rows' clock columns, resume, and refused budgets."""
import json
import time

import pytest
import torch

from harness import trial as trial_module
from harness.clocks import ComputeClock, compute_clock
from harness.errors import ConfigError
from harness.spec import parse_trial
from harness.trial import run_trial
from harness.training_state import TrainingState


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_compute_clock_counts_cpu_inside_steps_only():
    clock = ComputeClock()
    clock.begin()
    _burn(0.05)
    time.sleep(0.2)          # waiting (a descheduled process) costs no compute
    clock.end()
    _burn(0.1)               # outside begin/end: evaluation, checkpoints
    clock.end()              # an unmatched end counts nothing
    assert 0.04 <= clock.seconds < 0.12


def test_other_python_threads_are_not_charged():
    """A tracker's feed or TensorBoard's writer burning CPU beside a step is not training."""
    import threading

    stop = threading.Event()

    def busy():
        while not stop.is_set():
            _burn(0.001)

    clock = ComputeClock()
    worker = threading.Thread(target=busy, daemon=True)
    clock.begin()
    worker.start()          # started inside the step: all of its CPU is the others'
    end = time.thread_time() + 0.1
    while time.thread_time() < end:   # this thread's own 0.1 s
        pass
    time.sleep(0.2)
    clock.end()
    stop.set()
    worker.join()
    assert 0.08 <= clock.seconds < 0.16, clock.seconds


def test_state_budget_seconds_by_clock():
    state = TrainingState(clock=ComputeClock(3.0))
    state.wall_offset, state.overhead_s = 10.0, 4.0
    state.start_clock()
    assert state.budget_s("compute") == 3.0
    assert 6.0 <= state.budget_s("wall") < 6.5    # wall minus overhead
    saved = state.to_checkpoint(torch.Generator())
    assert saved["compute_s"] == 3.0
    restored = TrainingState(clock=ComputeClock())
    restored.load_checkpoint(saved, torch.Generator())
    assert restored.compute_s() == 3.0
    # a checkpoint from before the compute clock: its training seconds stand in
    del saved["compute_s"]
    older = TrainingState(clock=ComputeClock())
    older.load_checkpoint(saved, torch.Generator())
    assert older.compute_s() == pytest.approx(saved["wall_s"] - 4.0)
    with pytest.raises(RuntimeError):
        TrainingState().budget_s("compute")


def test_compute_clock_of_each_device():
    assert type(compute_clock(torch.device("cpu"))) is ComputeClock
    assert compute_clock(torch.device("meta")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_event_clock_times_gpu_work():
    clock = compute_clock(torch.device("cuda"))
    x = torch.randn(2048, 2048, device="cuda")
    clock.begin()
    for _ in range(20):
        x = x @ x / 2048
    clock.end()
    time.sleep(0.1)
    assert 0 < clock.seconds < 0.1


def _slow_steps(monkeypatch, wait_s: float) -> None:
    """Every D step also waits ``wait_s`` without computing: what a trial whose core is
    taken by other work experiences."""
    real = trial_module.discriminator_step

    def waiting(*args, **kwargs):
        time.sleep(wait_s)
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_module, "discriminator_step", waiting)


@pytest.mark.parametrize("clock", ["compute", "wall"])
def test_a_starved_trial_gets_the_same_compute_not_the_same_wall(tiny, tmp_path, monkeypatch, clock):
    config = tiny(**{"optimization.iterations": 10000, "optimization.time_budget_s": 0.6,
                     "optimization.clock": clock, "eval.every": 0, "sample_every": 0, "checkpoint_every": 10000})
    free = run_trial(config, tmp_path / "free")
    _slow_steps(monkeypatch, 0.05)
    starved = run_trial(config, tmp_path / "starved")
    assert free.status == starved.status == "completed"
    # waiting 0.05 s a step, a trial can take at most 0.6 / 0.05 + 1 steps of 0.6 wall seconds
    waited_out = int(0.6 / 0.05) + 1
    if clock == "compute":
        # A step after a sleep costs more CPU than one after a step (cold caches, the
        # intra-op pool waking up): on this 2-core machine the ratio runs 0.5-0.9, and
        # charging the waiting would bring it near waited_out / free.iteration (~0.1).
        assert 0.35 < starved.iteration / free.iteration < 1.6, (free.iteration, starved.iteration)
        assert starved.iteration > 2 * waited_out, starved.iteration   # the waiting was not charged
        assert starved.last_report["compute_s"] >= 0.6
        assert starved.last_report["train_s"] > 2 * starved.last_report["compute_s"]
    else:
        # (not compared with the free run: under a wall clock that one depends on this
        # machine's load as well — which is the point)
        assert starved.iteration <= waited_out, starved.iteration
        assert 0.6 <= starved.last_report["train_s"] < 1.0
    status = json.loads((tmp_path / "starved" / "status.json").read_text())
    assert status["budget"] == "seconds"


def test_evaluation_is_outside_the_compute_clock(tiny, tmp_path, monkeypatch):
    config = tiny(**{"optimization.iterations": 10000, "optimization.time_budget_s": 0.4, "eval.every": 5,
                     "sample_every": 0, "checkpoint_every": 10000})
    monkeypatch.setattr(trial_module.Trial, "evaluate", lambda self: (_burn(0.05), {
        "values": {}, "protocol": {}, "higher_is_better": {}})[1])
    result = run_trial(config, tmp_path / "t")
    row = result.last_report
    evaluations = -(-result.iteration // 5)   # every 5th iteration, and the last one
    assert row["compute_s"] < 0.4 + 0.2                     # one step past the budget at most
    assert row["eval_s"] >= 0.05 * evaluations * 0.9        # evaluation ran, uncounted
    assert row["clock"] == "compute" and row["host_cpus"] >= 1 and row["host_load"] >= 0


def test_samples_budget_sets_the_last_iteration(tiny, tmp_path):
    config = tiny(**{"optimization.iterations": 1000, "optimization.samples": 100, "optimization.batch_size": 8,
                     "optimization.accumulation": {"d": 2, "g": 1}, "eval.every": 0})
    spec = parse_trial(config)
    assert spec.optimization.samples_per_iteration == 16 and spec.optimization.iteration_limit == 7
    result = run_trial(config, tmp_path / "t")
    assert result.iteration == 7 and result.last_report["samples_seen"] == 112
    status = json.loads((tmp_path / "t" / "status.json").read_text())
    assert status["budget"] == "samples"
    capped = parse_trial(tiny(**{"optimization.iterations": 3, "optimization.samples": 100}))
    assert capped.optimization.iteration_limit == 3     # the first budget spent ends it


@pytest.mark.parametrize("change, message", [
    ({"optimization.samples": 7}, r"optimization.samples: got 7; expected at least one iteration's real images "
                                  r"shown to D \(batch_size x workers x accumulation.d x d_steps = 8\)"),
    ({"optimization.clock": "cpu"}, r"optimization.clock: got 'cpu'; expected one of compute, wall"),
    ({"device": "mps", "optimization.time_budget_s": 5.0},
     r"optimization.clock: got 'compute'; expected wall on device mps \(the compute clock is measured on cpu and "
     r"cuda devices only\)"),
])
def test_bad_budgets_are_refused(tiny, change, message):
    with pytest.raises(ConfigError, match=message):
        parse_trial(tiny(**change))
    parse_trial(tiny(**{"device": "mps", "optimization.time_budget_s": 5.0, "optimization.clock": "wall"}))
