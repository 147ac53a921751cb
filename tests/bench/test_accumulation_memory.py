"""Peak memory of batch 8 x accumulation 4 against batch 32 x 1 (same effective batch).

Each setting runs in a fresh process: the peak resident set grown during three
training iterations (after building models and data) is the activation + gradient
memory of a step. Target: 8 x 4 well below 32 x 1 (<= 0.6x here).
"""
import json
import subprocess
import sys

SCRIPT = r"""
import json, resource, sys, torch
from harness.spec import parse_trial
from harness.steps import discriminator_step, generator_step
from harness.trial import Trial
batch, acc = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
cfg = {"dataset": {"name": "shapes", "resolution": 64, "kwargs": {"count": 64}},
       "architecture": {"name": "resnet", "kwargs": {"width": 96, "z_dim": 128}},
       "optimization": {"batch_size": batch, "accumulation": {"d": acc, "g": acc}}}
trial = Trial(parse_trial(cfg), "/tmp/unused-accumulation-bench")
trial.build()
m = trial.models
def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = peak_mb()
import time
t0 = time.perf_counter()
for it in range(2):
    discriminator_step(m, trial.data, trial.sampler, batch, acc, it, trial.device); m.opt_d.step()
    generator_step(m, trial.sampler, batch, acc, it, trial.device); m.opt_g.step()
print(json.dumps({"step_peak_mb": peak_mb() - before, "seconds": time.perf_counter() - t0}))
"""


def measure(batch, acc):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(batch), str(acc)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_accumulation_peak_memory(benchmark):
    results = {}

    def run_both():
        results["32x1"] = measure(32, 1)
        results["8x4"] = measure(8, 4)

    benchmark.pedantic(run_both, rounds=1, iterations=1)
    ratio = results["8x4"]["step_peak_mb"] / results["32x1"]["step_peak_mb"]
    benchmark.extra_info.update({k: v for k, v in results.items()})
    benchmark.extra_info["memory_ratio"] = ratio
    print(f"\npeak step memory: 32x1 {results['32x1']['step_peak_mb']:.0f} MB, "
          f"8x4 {results['8x4']['step_peak_mb']:.0f} MB, ratio {ratio:.2f}; "
          f"time 32x1 {results['32x1']['seconds']:.1f}s, 8x4 {results['8x4']['seconds']:.1f}s")
    assert ratio <= 0.6
