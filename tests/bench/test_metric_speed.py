"""ganbench's full FID computation against pytorch-fid's pipeline, same weights, same images.

Both get the same n real and n generated 32 px images (pytorch-fid as PNG files, which is
how it is used; ganbench in memory) and a stand-in FID-Inception state dict (the real
weights cannot be downloaded here; the compute is identical). Timed: features of both
sets + statistics + Fréchet distance. n: GANBENCH_BENCH_N, default 500 (2,000 as in the
metrics issue takes ~35 minutes per run on a 2-core CPU, where the Inception forward
dominates: measured n=500: pytorch-fid 264 s, ganbench 246 s, x1.07; the distance step
alone x9.7). The Fréchet-distance step alone (eigh vs sqrtm at 2,048-d) is timed too.
"""
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from harness.metrics import extractors as ex
from harness.metrics.stats import GaussianStats, frechet_distance

N = int(os.environ.get("GANBENCH_BENCH_N", "500"))


def test_fid_pipeline_speed_vs_pytorch_fid(benchmark, tmp_path, stand_in_inception):
    from pytorch_fid.fid_score import calculate_fid_given_paths

    torch.set_num_threads(os.cpu_count() or 1)
    gen = torch.Generator().manual_seed(0)
    real = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=gen)
    fake = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8, generator=gen)
    dirs = []
    for name, images in (("real", real), ("fake", fake)):
        d = tmp_path / name
        d.mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:05d}.png")
        dirs.append(str(d))

    t0 = time.perf_counter()
    theirs = calculate_fid_given_paths(dirs, batch_size=100, device="cpu", dims=2048, num_workers=0)
    theirs_s = time.perf_counter() - t0

    extractor = ex.InceptionV3(torch.device("cpu"), "legacy_pytorch")

    def ours():
        fr = GaussianStats.of(extractor.features(real.float() / 127.5 - 1))
        ff = GaussianStats.of(extractor.features(fake.float() / 127.5 - 1))
        return frechet_distance(fr.mu, fr.sigma, ff.mu, ff.sigma)

    value = benchmark.pedantic(ours, rounds=1, iterations=1)
    ours_s = benchmark.stats.stats.min
    assert value == pytest.approx(theirs, rel=1e-4)  # same protocol, same number

    # the distance step alone, at 2,048-d
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a, b = GaussianStats.of(rng.normal(size=(N, 2048))), GaussianStats.of(rng.normal(size=(N, 2048)))
    t0 = time.perf_counter()
    frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    fd_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    fd_theirs = time.perf_counter() - t0
    benchmark.extra_info.update({"n": N, "pytorch_fid_s": theirs_s, "ganbench_s": ours_s,
                                 "full_ratio": theirs_s / ours_s, "fd_only_ratio": fd_theirs / fd_ours})
    print(f"\nn={N}: pytorch-fid {theirs_s:.1f}s, ganbench {ours_s:.1f}s (x{theirs_s / ours_s:.2f}); "
          f"distance only: sqrtm {fd_theirs:.1f}s vs eigh {fd_ours:.1f}s (x{fd_theirs / fd_ours:.2f})")
    assert fd_theirs / fd_ours >= 2.5
    assert theirs_s / ours_s >= 1.0
