"""The swd metric: deterministic, zero-ish for identical sets, and ranks corruptions."""
import torch
import torch.nn.functional as F

from harness.data import load_image_set
from harness.interfaces import EvalContext
from harness.metrics import evaluate
from harness.spec import DatasetSpec


def _images(count=400, seed=0):
    spec = DatasetSpec(name="shapes", resolution=32, kwargs={"count": count, "seed": seed})
    return torch.from_numpy(load_image_set(spec).images.copy()).float().div(127.5).sub(1)[:, :3]


def _swd(real, fake, seed=0, cache=None, batch_size=100):
    def generate(n):
        for i in range(0, n, batch_size):
            yield fake[i:i + batch_size]

    ctx = EvalContext(real=real, generate=generate, n_fake=len(fake), device=torch.device("cpu"), seed=seed,
                      dataset_fingerprint="test", cache=cache if cache is not None else {})
    return evaluate(["swd"], ctx)


def test_swd_ranks_same_distribution_blur_and_noise():
    real = _images(200, seed=0)
    other = _images(200, seed=1)  # fresh draws from the same distribution
    blurred = F.avg_pool2d(other, 3, stride=1, padding=1, count_include_pad=False)
    noise = torch.rand_like(other) * 2 - 1
    same = _swd(real, other)["values"]["swd"]
    blur = _swd(real, blurred)["values"]["swd"]
    rand = _swd(real, noise)["values"]["swd"]
    assert same < blur < rand, (same, blur, rand)
    assert same < 0.7 * blur


def test_swd_is_deterministic_and_cache_independent():
    real, fake = _images(100, 0), _images(100, 2)
    cache = {}
    first = _swd(real, fake, cache=cache)
    assert cache  # real descriptors were cached
    second = _swd(real, fake, cache=cache)
    third = _swd(real, fake)
    assert first["values"] == second["values"] == third["values"]
    protocol = first["protocol"]["swd"]
    assert protocol["n_fake"] == 100 and protocol["n_real"] == 100 and protocol["reference"] == "test"


def test_swd_does_not_depend_on_the_generation_batch_size():
    """eval.batch_size is memory only: the same 250 fakes in batches of 250, 100 or 7 (the
    last one short) give one value, and the set's own value as the real reference."""
    real, fake = _images(120, 0), _images(250, 3)
    values = {bs: _swd(real, fake, batch_size=bs)["values"]["swd"] for bs in (250, 100, 7)}
    assert values[250] == values[100] == values[7], values
    assert _swd(real, fake)["protocol"]["swd"]["patch_positions"] == "whole set"
