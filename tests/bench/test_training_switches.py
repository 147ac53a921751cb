"""performance.channels_last and performance.compile on a 32 px DCGAN training step (batch
32, one thread), against plain eager NCHW: the measurement behind their defaults.

Four trials are built (eager, channels-last, compile, both) and advanced in turns,
ITERATIONS_PER_TURN at a time, so machine noise hits all alike; each arm's time is the
sum of its turns. Compilation time (the probe on a copy of the models, plus the first
step's recompilation of the trial's own models) is reported apart and excluded.
channels_last is on by default because it is faster here: asserted >= 1.0 x eager.
"""
import os
import time

import torch

from harness.spec import parse_trial
from harness.trial import Trial
from tests.bench.turns import advance_in_turns, dcgan32

TURNS = int(os.environ.get("GANBENCH_BENCH_TURNS", "8"))
ITERATIONS_PER_TURN = 25
ARMS = {
    "eager": {"channels_last": False, "compile": False},
    "channels_last": {"channels_last": True, "compile": False},
    "compile": {"channels_last": False, "compile": True},
    "channels_last+compile": {"channels_last": True, "compile": True},
}


def config(perf):
    return dcgan32(10 * TURNS * ITERATIONS_PER_TURN, performance=perf)


def test_channels_last_and_compile_vs_eager(benchmark, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    # a cold compiler cache, so the compile time printed is what a new machine pays
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    trials, compile_s = {}, {}
    for name, perf in ARMS.items():
        t0 = time.perf_counter()
        trial = Trial(parse_trial(config(perf)), tmp_path / name)
        assert trial.start() is None
        trial.advance(2)  # first steps: allocations, and the compiled arms' own (re)compilation
        compile_s[name] = time.perf_counter() - t0
        trials[name] = trial
    spent = benchmark.pedantic(advance_in_turns, (trials, TURNS, ITERATIONS_PER_TURN), rounds=1, iterations=1)
    iterations = TURNS * ITERATIONS_PER_TURN
    ratios = {name: spent["eager"] / spent[name] for name in ARMS}
    effect = {name: trial.performance for name, trial in trials.items()}
    benchmark.extra_info.update({"iterations": iterations, "seconds": spent, "ratio_vs_eager": ratios,
                                 "build_and_compile_s": compile_s, "in_effect": effect})
    print(f"\n32 px DCGAN (width 64), batch 32, 1 thread, {iterations} iterations per arm:")
    for name in ARMS:
        print(f"  {name:22} {iterations / spent[name]:5.2f} it/s  x{ratios[name]:.3f} vs eager   "
              f"build+first steps {compile_s[name]:.1f} s  {effect[name]}")
    assert all(effect[name]["channels_last"] == ARMS[name]["channels_last"] for name in ARMS)
    assert ratios["channels_last"] >= 1.0
