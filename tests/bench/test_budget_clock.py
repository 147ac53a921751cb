"""A compute-seconds budget measures the trial, not the machine (issue: comparisons a busy
machine cannot fool).

The same trial (32 px DCGAN on the procedural shapes, one thread) runs with a compute
budget and with a wall budget, each alone and with busy-loop processes occupying every
core beside it — interleaved over three rounds, because this shared VM alone varies by
~10 % between two identical runs seconds apart (measured: 61.5 to 69.7 ms of CPU per
iteration idle). Target: under the compute clock the median iterations reached agree
within 10 %; the wall-clock budget, in the same run, loses far more (the busy loops take
about half of what the trial had). The compute clock is not perfectly blind to the
neighbours: they share caches (and, on SMT siblings, execution units), which raised the
CPU time per iteration by 3-9 % here. Not part of `make test`: it loads the machine on
purpose. Ratios only, measured side by side.
"""
import json
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest

BUDGET_S = 10.0
ROUNDS = 3
SCRIPT = r"""
import json, sys, tempfile
from harness.trial import run_trial
clock, budget = sys.argv[1], float(sys.argv[2])
config = {"name": "clock-bench", "dataset": {"name": "shapes", "resolution": 32, "kwargs": {"count": 256}},
          "architecture": {"name": "dcgan", "kwargs": {"width": 32, "z_dim": 100}}, "loss": {"name": "hinge"},
          "optimization": {"batch_size": 32, "iterations": 100000, "time_budget_s": budget, "clock": clock},
          "eval": {"every": 0, "metrics": []}, "sample_every": 0, "checkpoint_every": 100000, "device": "cpu",
          "threads": 1, "seed": 0}
with tempfile.TemporaryDirectory() as out:
    result = run_trial(config, out)
    row = result.last_report
print(json.dumps({"iterations": result.iteration, "wall_s": row["wall_s"], "compute_s": row["compute_s"],
                  "train_s": row["train_s"], "host_load": row.get("host_load")}))
"""
BUSY = "while True:\n    pass\n"


@contextmanager
def busy_cores(n: int):
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def run(clock: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, clock, str(BUDGET_S)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_compute_budget_survives_a_busy_machine(benchmark):
    import statistics

    cores = os.cpu_count() or 1
    runs = {key: [] for key in ("compute, alone", "wall, alone", "compute, busy", "wall, busy")}
    for round_ in range(ROUNDS):
        runs["compute, alone"].append(run("compute"))
        runs["wall, alone"].append(run("wall"))
        with busy_cores(cores):
            if round_ == 0:
                runs["compute, busy"].append(benchmark.pedantic(run, args=("compute",), rounds=1, iterations=1))
            else:
                runs["compute, busy"].append(run("compute"))
            runs["wall, busy"].append(run("wall"))
    median = {key: statistics.median(r["iterations"] for r in rs) for key, rs in runs.items()}
    compute_ratio = median["compute, busy"] / median["compute, alone"]
    wall_ratio = median["wall, busy"] / median["wall, alone"]
    benchmark.extra_info.update({"iterations": {k: [r["iterations"] for r in rs] for k, rs in runs.items()},
                                 "median_iterations": median, "busy_processes": cores,
                                 "compute_ratio": compute_ratio, "wall_ratio": wall_ratio})
    print(json.dumps(benchmark.extra_info, indent=1))
    assert abs(compute_ratio - 1.0) <= 0.10, median
    assert wall_ratio < 0.8, median
