"""performance.precision bf16 against fp32 on a 32 px DCGAN training step (batch 32, one
thread) on the CPU: what bf16 gains or costs here (it is allowed on a CPU, never its
default: it depends on the CPU having bf16 instructions), and how far its generator is
from fp32's after the same steps.

Both trials start from the same seed and are advanced in turns, ITERATIONS_PER_TURN at a
time, so machine noise hits both alike. The speed is reported, not targeted. Two GAN runs
that differ by rounding drift apart over many steps, so the agreement printed here after
~80 steps is a trajectory difference, not an error (tests/test_precision.py checks the
agreement over a few steps); asserted: bf16 ran (outputs differ) and stayed finite.
"""
import os

import torch

from tests.bench.turns import advance_in_turns, dcgan32, start_trials

TURNS = int(os.environ.get("GANBENCH_BENCH_TURNS", "8"))
ITERATIONS_PER_TURN = 10
ARMS = ("fp32", "bf16")


def config(precision):
    return dcgan32(10 * TURNS * ITERATIONS_PER_TURN, **{"performance.precision": precision})


def test_bf16_vs_fp32_on_the_cpu(benchmark, tmp_path):
    torch.set_num_threads(1)
    trials = start_trials({name: config(name) for name in ARMS}, tmp_path)
    spent = benchmark.pedantic(advance_in_turns, (trials, TURNS, ITERATIONS_PER_TURN), rounds=1, iterations=1)
    iterations = TURNS * ITERATIONS_PER_TURN
    z = torch.randn(64, 100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = {name: trial.models.G_ema(z) for name, trial in trials.items()}
    diff = (out["fp32"] - out["bf16"]).abs()
    agreement = {"max_abs": diff.max().item(), "mean_abs": diff.mean().item()}
    ratio = spent["fp32"] / spent["bf16"]
    benchmark.extra_info.update({"iterations": iterations, "seconds": spent, "bf16_speed_vs_fp32": ratio,
                                 "g_ema_output_difference": agreement})
    print(f"\n32 px DCGAN (width 64), batch 32, 1 thread, {iterations + 2} iterations per arm:")
    for name in ARMS:
        print(f"  {name}: {iterations / spent[name]:5.2f} it/s")
    print(f"  bf16 x{ratio:.3f} the speed of fp32; G_ema outputs differ by max {agreement['max_abs']:.4f}, "
          f"mean {agreement['mean_abs']:.5f}")
    for trial in trials.values():
        trial.close()
    assert 0 < agreement["mean_abs"] and torch.isfinite(out["bf16"]).all()
