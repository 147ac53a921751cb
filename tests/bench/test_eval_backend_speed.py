"""Evaluation speed on the CPU: ONNX Runtime against torch eager, same weights, one thread.

1. Feature extraction alone: 500 images at 224 px through EfficientNet-Lite0. The two
   backends run interleaved, 100 images at a time (eager, ONNX, eager, ONNX, ...), on the
   very same preprocessed tensors, so machine noise hits both alike. Target >= 4x; the
   largest feature difference is printed (features are ~5 in scale).
2. End to end, ``ganbench metric --threads 1`` (fd_effnet + kid_effnet) on 500 images a
   32 px generator draws, against the 100 LFW faces, real features not cached (both
   extract 600 images): the onnxruntime backend against a bare eager pass (``--backend
   torch``), alternated over rounds, CLI start-up aside (both run in this process).
   Target >= 3x, values equal within 1e-3 relative.
"""
import os
import time

import numpy as np
import pytest
import torch

from harness.metrics import feature_metrics as fm
from harness.metrics.extractors import to_uint8

N = int(os.environ.get("GANBENCH_BENCH_N", "500"))
CHUNK = 100


def test_feature_extraction_onnxruntime_vs_eager(benchmark):
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    eager = fm.extractor("efficientnet-lite0", "bilinear224", cpu, "torch")
    onnx = fm.extractor("efficientnet-lite0", "bilinear224", cpu, "onnxruntime")  # exported here if needed
    assert onnx.backend == "onnxruntime"
    gen = torch.Generator().manual_seed(0)
    images = to_uint8(torch.rand(N, 3, 32, 32, generator=gen) * 2 - 1)
    inputs = [eager.preprocess(images[i:i + CHUNK]) for i in range(0, N, CHUNK)]
    net = eager.eager_network()
    with torch.no_grad():  # warm both (first-call allocations)
        net(inputs[0][:4])
        onnx._onnx(inputs[0][:4])
    times = {"eager": 0.0, "onnxruntime": 0.0}
    diffs = []

    def run_both():
        times.update(eager=0.0, onnxruntime=0.0)
        diffs.clear()
        for x in inputs:
            t0 = time.perf_counter()
            with torch.no_grad():
                a = net(x)
            t1 = time.perf_counter()
            b = onnx._onnx(x)
            t2 = time.perf_counter()
            times["eager"] += t1 - t0
            times["onnxruntime"] += t2 - t1
            diffs.append(float((a - b).abs().max()))

    benchmark.pedantic(run_both, rounds=1, iterations=1)
    ratio = times["eager"] / times["onnxruntime"]
    benchmark.extra_info.update({"n": N, "eager_img_per_s": N / times["eager"],
                                 "onnxruntime_img_per_s": N / times["onnxruntime"], "ratio": ratio,
                                 "max_abs_feature_diff": max(diffs)})
    print(f"\n{N} images at 224 px, 1 thread: eager {N / times['eager']:.1f} img/s, onnxruntime "
          f"{N / times['onnxruntime']:.1f} img/s (x{ratio:.2f}); max |feature diff| {max(diffs):.2e}")
    assert max(diffs) <= 1e-4
    assert ratio >= 4.0


def test_metric_cli_end_to_end_onnxruntime_vs_eager(benchmark, tmp_path, isolated_cache):
    from harness.metrics.standalone import measure
    from harness.trial import run_trial
    from tests.conftest import tiny_config

    trial = tmp_path / "g32"
    run_trial(tiny_config(**{"dataset.resolution": 32, "architecture.kwargs": {"width": 32, "z_dim": 64},
                             "optimization.iterations": 2, "eval.every": 0, "sample_every": 0}), trial)
    from harness.data.catalog import build_dataset

    build_dataset("lfw-faces", 32)
    metrics = ["fd_effnet", "kid_effnet"]
    stats = isolated_cache / "stats"
    fm.extractor("efficientnet-lite0", "bilinear224", torch.device("cpu"), "onnxruntime")  # export outside timing
    seconds = {"torch": [], "onnxruntime": []}
    values = {}

    def one(backend):
        for f in stats.glob("*.npy") if stats.exists() else []:
            f.unlink()  # real features extracted in every round, by the backend under test
        t0 = time.perf_counter()
        out = measure("lfw-faces", str(trial), metrics, n=N, threads=1, backend=backend)
        seconds[backend].append(time.perf_counter() - t0)
        values[backend] = out
        return out

    def rounds():
        for _ in range(2):
            one("torch")
            one("onnxruntime")

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    eager_s, onnx_s = min(seconds["torch"]), min(seconds["onnxruntime"])
    ratio = eager_s / onnx_s
    for key in ("fd_effnet", "kid_effnet"):
        assert values["onnxruntime"]["values"][key] == pytest.approx(values["torch"]["values"][key], rel=1e-3)
    assert values["onnxruntime"]["environment"]["efficientnet-lite0"]["backend"] == "onnxruntime"
    benchmark.extra_info.update({"n_fake": N, "eager_s": eager_s, "onnxruntime_s": onnx_s, "ratio": ratio,
                                 "values": {b: v["values"] for b, v in values.items()}})
    print(f"\nganbench metric --threads 1, {N} generated 32 px + {values['torch']['real']['n']} real images: "
          f"eager {eager_s:.1f} s, onnxruntime {onnx_s:.1f} s (x{ratio:.2f}); fd_effnet "
          f"{values['torch']['values']['fd_effnet']:.4f} vs {values['onnxruntime']['values']['fd_effnet']:.4f}")
    assert np.isfinite(ratio) and ratio >= 3.0
