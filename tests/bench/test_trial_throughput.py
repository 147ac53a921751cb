"""ganbench's training throughput against a bare PyTorch loop of the same DCGAN.

Both run in this process, interleaved round by round (A B A B ...), one thread each, so
machine noise hits both alike; the assertion is on the ratio of their best rounds.
Target: ganbench >= 0.95x the bare loop.
"""
import time

import torch
import torch.nn.functional as F

from harness.spec import parse_trial
from harness.trial import Trial
from tests.conftest import tiny_config

ITERATIONS = 60
ROUNDS = 3

CONFIG = tiny_config(**{
    "dataset.resolution": 32, "dataset.kwargs": {"count": 512},
    "architecture.kwargs": {"width": 64, "z_dim": 100},
    "optimization.batch_size": 32, "optimization.iterations": ITERATIONS,
    "ema.decay": 0.999, "eval.every": 0, "eval.metrics": [], "log_every": 10,
    "checkpoint_every": 10_000, "sample_every": 0,
})


def bare_loop(trial: Trial) -> float:
    """The loop a researcher would write by hand: same models, data, loss, optimizer."""
    m = trial.models
    G, D = m.G, m.D
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = trial.data.images
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        real = data[torch.randint(len(data), (32,), generator=gen)]
        z = torch.randn(32, G.z_dim, generator=gen)
        with torch.no_grad():
            fake = G(z)
        opt_d.zero_grad(set_to_none=True)
        d_loss = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake)).mean()
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        for p in D.parameters():
            p.requires_grad_(False)
        g_loss = -D(G(torch.randn(32, G.z_dim, generator=gen))).mean()
        g_loss.backward()
        for p in D.parameters():
            p.requires_grad_(True)
        opt_g.step()
        d_loss.item()  # a hand-written loop logs its loss too
    return time.perf_counter() - start


def test_trial_throughput_vs_bare_loop(benchmark, tmp_path):
    torch.set_num_threads(1)
    bare_times = []
    counter = iter(range(1000))

    def setup():
        # a bare-loop round first (on its own freshly built models), then a fresh trial
        reference = Trial(parse_trial(CONFIG), tmp_path / "unused")
        reference.build()
        bare_times.append(bare_loop(reference))
        trial = Trial(parse_trial(CONFIG), tmp_path / f"trial-{next(counter)}")
        trial.build()
        return (trial,), {}

    result = benchmark.pedantic(lambda trial: trial.run(), setup=setup, rounds=ROUNDS, iterations=1)
    assert result.status == "completed"
    trial_best = benchmark.stats.stats.min
    ratio = min(bare_times) / trial_best
    benchmark.extra_info.update({
        "bare_loop_best_s": min(bare_times), "ganbench_best_s": trial_best,
        "throughput_ratio": ratio, "iterations": ITERATIONS,
        "ganbench_it_per_s": ITERATIONS / trial_best, "bare_it_per_s": ITERATIONS / min(bare_times),
    })
    print(f"\nbare {ITERATIONS / min(bare_times):.2f} it/s, ganbench {ITERATIONS / trial_best:.2f} it/s, "
          f"ratio {ratio:.3f}")
    assert ratio >= 0.95
