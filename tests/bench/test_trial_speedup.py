"""One CPU-preset trial of studies/transfer_ablation.yaml (the scratch row, seed 0) with
its iterations fixed, before and after the CPU speed work, side by side in this process.

* before: torch eager feature extraction, NCHW training (performance.channels_last off);
* after: the defaults (ONNX Runtime features, channels-last training).

Both trials are advanced in turns of TURN iterations, so both see the same machine noise;
each has ITERATIONS iterations (the preset's 300 s budget gave ~3,000 here) and evaluates
fd_effnet + kid_effnet + swd on 500 samples every 1,000, as the preset does. The real
set's features are cached before timing, so neither arm pays them. Target: after >= 1.4x
faster in wall time at equal iterations and evaluations. Values: the *before* trial's
final generator evaluated again on ONNX Runtime must give its recorded values within
1e-3 relative (the after trial trains channels-last, so its generator differs by float
rounding and its values are printed, not compared).
"""
import os
import time
from pathlib import Path

import pytest
import torch

from harness.data.catalog import build_dataset
from harness.interfaces import EvalContext
from harness.metrics import feature_metrics as fm
from harness.metrics.onnx_backend import ENV_VAR
from harness.study import load_study, plan
from harness.trial import Trial

ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = int(os.environ.get("GANBENCH_BENCH_ITERATIONS", "3000"))
TURN = 500


def scratch_spec():
    study = load_study(ROOT / "studies" / "transfer_ablation.yaml", preset="cpu")
    spec = next(p.spec for p in plan(study) if p.labels.get("variant") == "scratch" and p.spec.seed == 0)
    return spec.replace({"optimization.time_budget_s": None, "optimization.iterations": ITERATIONS})


def test_transfer_ablation_cpu_trial_before_and_after(benchmark, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    spec = scratch_spec()
    assert spec.eval.metrics == ["fd_effnet", "kid_effnet", "swd"] and spec.eval.every == 1000
    build_dataset(spec.dataset.name, spec.dataset.resolution)
    arms = {
        "before": (Trial(spec.replace({"performance.channels_last": False}), tmp_path / "before"), "torch"),
        "after": (Trial(spec, tmp_path / "after"), "auto"),
    }
    for name, (trial, backend) in arms.items():
        monkeypatch.setenv(ENV_VAR, backend)
        assert trial.start() is None
    # the real set's features once, outside the timing (the disk cache serves both arms)
    before = arms["before"][0]
    ext = fm.extractor("efficientnet-lite0", "bilinear224", torch.device("cpu"), "onnxruntime")
    fm.real_features(ext, EvalContext(real=before.data.rgb, generate=None, n_fake=0, device=torch.device("cpu"),
                                      seed=0, dataset_fingerprint=before.data.rgb_fingerprint, cache={}))
    wall = {name: 0.0 for name in arms}

    def side_by_side():
        for target in range(TURN, ITERATIONS + 1, TURN):
            for name, (trial, backend) in arms.items():
                monkeypatch.setenv(ENV_VAR, backend)
                t0 = time.perf_counter()
                trial.advance(target)
                wall[name] += time.perf_counter() - t0

    benchmark.pedantic(side_by_side, rounds=1, iterations=1)
    rows = {name: [r for r in trial.record.reports() if "metrics" in r] for name, (trial, _) in arms.items()}
    assert [r["iteration"] for r in rows["before"]] == [r["iteration"] for r in rows["after"]] == \
        list(range(1000, ITERATIONS + 1, 1000))
    assert rows["after"][-1]["eval_environment"]["efficientnet-lite0"]["backend"] == "onnxruntime"
    assert rows["before"][-1]["eval_environment"]["efficientnet-lite0"]["backend"] == "torch"
    eval_s = {name: trial.eval_s for name, (trial, _) in arms.items()}
    ratio = wall["before"] / wall["after"]

    monkeypatch.setenv(ENV_VAR, "onnxruntime")
    again = before.evaluate()["values"]
    recorded = rows["before"][-1]["metrics"]
    for key in ("fd_effnet", "kid_effnet", "swd"):
        assert again[key] == pytest.approx(recorded[key], rel=1e-3), key

    benchmark.extra_info.update({"iterations": ITERATIONS, "wall_s": wall, "eval_s": eval_s, "ratio": ratio,
                                 "before_final": recorded, "before_final_on_onnxruntime": again,
                                 "after_final": rows["after"][-1]["metrics"]})
    print(f"\ntransfer_ablation cpu preset, scratch seed 0, {ITERATIONS} iterations, "
          f"{len(rows['before'])} evaluations each:")
    for name in arms:
        per_eval = eval_s[name] / len(rows[name])
        print(f"  {name:6} wall {wall[name]:6.1f} s   evaluation {eval_s[name]:6.1f} s ({per_eval:.1f} s each)   "
              f"training+rest {wall[name] - eval_s[name]:6.1f} s   final {rows[name][-1]['metrics']}")
    print(f"  speed-up x{ratio:.2f}; before's final generator on onnxruntime: {again}")
    assert ratio >= 1.4
