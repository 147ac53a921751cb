"""Interleaved measurement of several trials: each advanced a few iterations in turn, so
machine noise hits every arm alike."""
import time


def advance_in_turns(trials, turns: int, per_turn: int):
    """Advance every trial (name -> started Trial) ``per_turn`` iterations, ``turns`` times
    round; returns the seconds each spent."""
    spent = {name: 0.0 for name in trials}
    for _ in range(turns):
        for name, trial in trials.items():
            t0 = time.perf_counter()
            trial.advance(trial.iteration + per_turn)
            spent[name] += time.perf_counter() - t0
    return spent


def start_trials(configs, folder, warmup: int = 2):
    """name -> trial config: each trial built in ``folder``/name, started fresh and
    advanced ``warmup`` iterations (first steps: allocations), by name."""
    from harness.spec import parse_trial
    from harness.trial import Trial

    trials = {}
    for name, cfg in configs.items():
        trial = Trial(parse_trial(cfg), folder / name.replace(" ", "-"))
        assert trial.start() is None
        trial.advance(warmup)
        trials[name] = trial
    return trials


def dcgan32(iterations: int, **overrides):
    """The benchmarks' training config: a 32 px DCGAN (width 64, G 1.07 M), batch 32, that
    only trains (no evaluation, no checkpoint before ``iterations``), with ``overrides``."""
    from tests.conftest import tiny_config

    return tiny_config(**{
        "dataset.resolution": 32, "dataset.kwargs": {"count": 512},
        "architecture.kwargs": {"width": 64, "z_dim": 100},
        "optimization.batch_size": 32, "optimization.iterations": iterations,
        "eval.every": 0, "eval.metrics": [], "log_every": 1000, "checkpoint_every": 100_000, "sample_every": 0,
        **overrides,
    })
