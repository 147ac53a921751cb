"""The CPU StyleGAN2 (studies/presets/stylegan2-cpu-32.yaml: the low-shot suite's cpu
model) against the CPU DCGAN (studies/presets/dcgan-cpu-32.yaml) at equal resolution
(32 px) and equal batch (16), one thread, on the generated shapes: iterations per second
of each, and their ratio, to plan a study's budget. Both trials only train (no evaluation
or checkpoint) and are advanced in turns, so machine noise hits both alike. Reported, not
targeted; asserted: both train, their losses stay finite."""
import math
import os
from pathlib import Path

import torch
import yaml

from harness.store import TrialRecord
from tests.bench.turns import advance_in_turns, start_trials

TURNS = int(os.environ.get("GANBENCH_BENCH_TURNS", "6"))
ITERATIONS_PER_TURN = 10
PRESETS = Path(__file__).resolve().parents[2] / "studies" / "presets"
ARMS = {"stylegan2": "stylegan2-cpu-32.yaml", "dcgan": "dcgan-cpu-32.yaml"}


def config(file):
    cfg = yaml.safe_load((PRESETS / file).read_text())
    cfg.update({"dataset": {"name": "shapes", "resolution": 32, "channels": 3, "kwargs": {"count": 256}},
                "eval": {"every": 0, "metrics": []}, "sample_every": 0, "log_every": 10,
                "checkpoint_every": 100_000, "device": "cpu", "threads": 1})
    cfg["optimization"] = {**cfg["optimization"], "batch_size": 16, "iterations": 10 * TURNS * ITERATIONS_PER_TURN}
    cfg["optimization"].pop("samples", None)
    return cfg


def test_cpu_stylegan2_vs_cpu_dcgan_throughput(benchmark, tmp_path):
    torch.set_num_threads(1)
    trials = start_trials({name: config(file) for name, file in ARMS.items()}, tmp_path)
    spent = benchmark.pedantic(advance_in_turns, (trials, TURNS, ITERATIONS_PER_TURN), rounds=1, iterations=1)
    iterations = TURNS * ITERATIONS_PER_TURN
    rate = {name: iterations / s for name, s in spent.items()}
    params = {name: sum(p.numel() for p in t.models.G.parameters()) for name, t in trials.items()}
    benchmark.extra_info.update({"iterations": iterations, "it_per_s": rate, "G_parameters": params,
                                 "stylegan2_time_vs_dcgan": spent["stylegan2"] / spent["dcgan"]})
    print(f"\n32 px, batch 16, 1 thread, {iterations} iterations per arm, interleaved:")
    for name in ARMS:
        print(f"  {name}: {rate[name]:5.2f} it/s ({16 * rate[name]:.0f} images/s), G {params[name] / 1e6:.2f} M")
    print(f"  a StyleGAN2 iteration costs x{spent['stylegan2'] / spent['dcgan']:.2f} a DCGAN iteration")
    for name, trial in trials.items():
        trial.close()
        rows = TrialRecord(tmp_path / name).reports()
        assert rows and all(math.isfinite(v) for row in rows for v in row["losses"].values()), name
    assert all(r > 0 for r in rate.values())
