"""What experiment tracking costs a training step: a 32 px DCGAN trial (batch 32, one
thread) reporting every 5 iterations with a sample grid every 50, with no tracker, with
TensorBoard (the default), and with TensorBoard + MLflow (SQLite) + W&B (offline).

The three trials are advanced in turns so machine noise hits all alike; each arm's time
is the sum of its turns (the trackers' threads run meanwhile, on the same cores, which is
what a trial pays). Asserted: TensorBoard, on by default, costs at most 10 % of the steps.
"""
import os

import torch

from tests.bench.turns import advance_in_turns, dcgan32, start_trials

TURNS = int(os.environ.get("GANBENCH_BENCH_TURNS", "8"))
ITERATIONS_PER_TURN = 25


def arms(tmp_path):
    return {
        "none": {"tensorboard": None},
        "tensorboard": {},
        "all three": {"mlflow": {"uri": f"sqlite:///{tmp_path}/mlflow.db"}, "wandb": {"mode": "offline"}},
    }


def config(tracking):
    return dcgan32(10 * TURNS * ITERATIONS_PER_TURN, log_every=5, sample_every=50, tracking=tracking)


def test_tracking_overhead(benchmark, tmp_path):
    torch.set_num_threads(1)
    trials = start_trials({name: config(tracking) for name, tracking in arms(tmp_path).items()}, tmp_path)
    spent = benchmark.pedantic(advance_in_turns, (trials, TURNS, ITERATIONS_PER_TURN), rounds=1, iterations=1)
    for trial in trials.values():
        trial.tracking.close()
    iterations = TURNS * ITERATIONS_PER_TURN
    ratios = {name: spent[name] / spent["none"] for name in trials}
    benchmark.extra_info.update({"iterations": iterations, "seconds": spent, "time_vs_none": ratios})
    print(f"\n32 px DCGAN (width 64), batch 32, 1 thread, {iterations} iterations per arm, a row every 5:")
    for name in trials:
        print(f"  {name:12} {iterations / spent[name]:5.2f} it/s  time x{ratios[name]:.3f} vs no tracker")
    assert ratios["tensorboard"] <= 1.10
