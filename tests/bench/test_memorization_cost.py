"""What the memorisation check adds to an evaluation with the CPU presets' metrics.

The CPU presets evaluate swd, fd_effnet and kid_effnet on 500 generated 32 px images
against the reference set (here emoji-faces, 110 images, as the few-shot studies); they
now add memorization_effnet. Both evaluations run interleaved, round by round, with the
same generator (the CPU preset's DCGAN, fixed weights), the same backend and threads; the
real features are cached before timing (as after a trial's first evaluation). The check
reuses the evaluation's EfficientNet features and Fréchet distance; it adds the
fake-by-real distances, MiFID's cosine distances and a second generator pass up to the
closest pairs' indices (for the report's image pairs). Target: <= 1.10x the evaluation
time without it (medians of ROUNDS rounds).
"""
import os
import statistics
import time

import torch

from harness.data.catalog import build_dataset
from harness.interfaces import EvalContext
from harness.metrics import evaluate
from harness.metrics.generation import FittingGenerator
from harness.spec import parse_trial
from harness.build import build_architecture
from tests.conftest import tiny_config

ROUNDS = 5
DEFAULT = ["swd", "fd_effnet", "kid_effnet"]
WITH_CHECK = DEFAULT + ["memorization_effnet"]
N = 500


def test_memorization_adds_at_most_ten_percent(benchmark):
    torch.set_num_threads(os.cpu_count() or 1)
    image_set = build_dataset("emoji-faces", 32)[1]
    real = torch.from_numpy(image_set.images.copy())[:, :3].float().div(127.5).sub(1)
    spec = parse_trial(tiny_config(**{"dataset.resolution": 32, "architecture.kwargs": {"width": 64,
                                                                                          "z_dim": 100}}))
    torch.manual_seed(0)
    G = build_architecture(spec).make_generator().eval()
    cache = {}

    def context():
        return EvalContext(real=real, generate=FittingGenerator(G, 100, 0, torch.device("cpu")), n_fake=N,
                           device=torch.device("cpu"), seed=0, dataset_fingerprint=image_set.rgb_fingerprint,
                           cache=cache, want_artifacts=True)  # as a trial's Reporter: the pairs are made

    evaluate(WITH_CHECK, context())  # warm: extractor loaded, real features cached
    times = {"default": [], "with_check": []}

    def one_round():
        for name, metrics in (("default", DEFAULT), ("with_check", WITH_CHECK)):
            start = time.perf_counter()
            evaluate(metrics, context())
            times[name].append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = median["with_check"] / median["default"]
    benchmark.extra_info.update({"default_s": median["default"], "with_check_s": median["with_check"],
                                 "ratio": ratio})
    print(f"\nevaluation {median['default']:.2f} s -> {median['with_check']:.2f} s with memorization_effnet "
          f"({ratio:.3f}x; rounds: {times})")
    assert ratio <= 1.10
