"""Evaluate any generator or dataset against a dataset (``ganbench metric``); trials use
the same metric code through :func:`harness.metrics.evaluate`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch

from harness import checkpoint as ckpt
from harness.build import build_architecture
from harness.data.catalog import load_built
from harness.errors import ConfigError
from harness.interfaces import EvalContext, Generator
from harness.metrics import check_sizes, evaluate
from harness.metrics.floors import batches_of, real_floor
from harness.metrics.generation import FittingGenerator
from harness.metrics.onnx_backend import requested_backend
from harness.spec import TrialSpec, parse_trial


def _images(name: str, resolution: Optional[int]) -> Tuple[torch.Tensor, str]:
    image_set = load_built(name, resolution)
    return image_set.rgb_tensor(), image_set.rgb_fingerprint


def generator_from(path: Path, device: torch.device) -> Tuple[Generator, TrialSpec, int]:
    """The EMA generator of a trial directory (newest valid checkpoint) or of one checkpoint file."""
    path = Path(path)
    if path.is_dir():
        state = ckpt.load_latest(path / "checkpoints")
        if state is None:
            raise ConfigError("--fake", str(path), "a trial directory with a valid checkpoint")
    elif path.suffix == ".pt":
        state = ckpt.load_file(path, path.with_suffix(".json"))
    else:
        raise ConfigError("--fake", str(path), "a dataset name, an .hdf5 file, a trial directory or a ckpt-*.pt file")
    spec = parse_trial(state["config"])
    G = build_architecture(spec).make_generator()
    G.load_state_dict(state["G_ema"])
    G.set_progress(int(state["iteration"]))
    return G.to(device).eval(), spec, int(state["iteration"])


def measure(real: str, fake: Optional[str], metrics: List[str], n: Optional[int] = None,
            resolution: Optional[int] = None, device: str = "cpu", seed: int = 0, batch_size: int = 100,
            threads: Optional[int] = None, backend: Optional[str] = None, split: bool = False, splits: int = 5,
            options: Optional[Dict[str, Any]] = None, save_stats: Optional[str] = None,
            warn: Callable[[str], None] = lambda message: None) -> Dict[str, Any]:
    """Evaluate ``fake`` against ``real`` — a dataset, or a ``.npz`` of reference
    statistics for a Fréchet distance — (or, with ``split``, ``real``'s own floor: its
    halves against each other; with ``save_stats``, write ``real``'s statistics for one
    Fréchet metric there). ``threads``: torch and ONNX Runtime threads (default: every
    core); ``backend``: the feature backend (auto, torch, onnxruntime)."""
    requested_backend(backend)  # a bad name fails before anything is loaded
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        if save_stats is not None:
            return _save_stats(real, metrics, save_stats, resolution, device, backend)
        if split:
            return _floor(real, metrics, n, resolution, device, seed, batch_size, backend, splits, options or {})
        if fake is None:
            raise ConfigError("--fake", None, "a dataset, trial directory or checkpoint (or --split for the floor)")
        if Path(fake).resolve() == Path(real).resolve() or fake == real:
            warn(f"--fake {fake} is the reference set itself: this compares a set with itself (0 for a distance, "
                 f"the best possible, not a floor a generator can reach); `ganbench metric --real {real} --split` "
                 "gives the real-vs-real floor")
        return _measure(real, fake, metrics, n, resolution, device, seed, batch_size, backend, options or {}, warn)
    finally:
        torch.set_num_threads(saved)  # a library call leaves the caller's setting as it was


def _random_subset(images: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` images drawn without replacement with ``seed`` (never the first ``count``:
    a dataset's order is often by class)."""
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    return images[order[:count]]


def _measure(real: str, fake: str, metrics: List[str], n: Optional[int], resolution: Optional[int], device: str,
             seed: int, batch_size: int, backend: Optional[str], options: Dict[str, Any],
             warn: Callable[[str], None]) -> Dict[str, Any]:
    dev = torch.device(device)
    source: Dict[str, Any] = {"fake": fake}
    fake_path = Path(fake)
    truncation, sampling = None, {}
    if ("/" in fake or fake.endswith((".pt", ".hdf5", ".h5"))) and not fake_path.exists():
        raise ConfigError("--fake", fake, "an existing trial directory, ckpt-*.pt or .hdf5 file, or a dataset name")
    if fake_path.is_dir() or fake_path.suffix == ".pt":
        G, spec, iteration = generator_from(fake_path, dev)
        resolution = resolution or spec.dataset.resolution
        n_fake = n or spec.eval.n_samples
        truncation, sampling = spec.eval.truncation, G.sampling()
        generate = FittingGenerator(G, batch_size, seed, dev, truncation)
        source.update({"kind": "generator", "iteration": iteration, "architecture": spec.architecture.name})
    else:
        fake_images, fake_fp = _images(fake, resolution)
        resolution = resolution or fake_images.shape[-1]
        n_fake = min(n or fake_images.shape[0], fake_images.shape[0])
        subset = n_fake < fake_images.shape[0]
        if subset:
            fake_images = _random_subset(fake_images, n_fake, seed)
        generate = batches_of(fake_images, batch_size, dev)
        source.update({"kind": "dataset", "fingerprint": fake_fp,
                       "subset": f"random {n_fake} (seed {seed})" if subset else "all"})
    reference = None
    if real.endswith(".npz"):
        reference = _reference_stats(real, metrics, dev, backend)
        real_images, real_fp = torch.zeros(0, 3, resolution or 1, resolution or 1), f"npz-sha256:{reference['sha256']}"
        if reference["verified"] is False:
            warn(f"{real} does not say which extractor and pipeline made it (a pytorch-fid or clean-fid file): "
                 f"its dimension fits {metrics[0]}; the protocol records reference_pipeline=unverified")
    else:
        real_images, real_fp = _images(real, resolution)
        check_sizes(metrics, n_fake, int(real_images.shape[0]), options, fake_path="--n (generated images)",
                    real_path=f"--real {real}")
    ctx = EvalContext(real=real_images.to(dev), generate=generate, n_fake=n_fake, device=dev, seed=seed,
                      dataset_fingerprint=real_fp, feature_backend=backend, truncation=truncation, sampling=sampling,
                      options=options,
                      reference_stats=reference)
    result = evaluate(metrics, ctx)
    result.pop("artifacts")  # always empty here (want_artifacts is off)
    n_real = reference["stats"].n if reference else int(real_images.shape[0])
    result["real"] = {"name": real, "fingerprint": real_fp, "n": n_real, "resolution": resolution}
    result["fake"] = {**source, "n": n_fake}
    return result


def _floor(real: str, metrics: List[str], n: Optional[int], resolution: Optional[int], device: str, seed: int,
           batch_size: int, backend: Optional[str], splits: int, options: Dict[str, Any]) -> Dict[str, Any]:
    images, fingerprint = _images(real, resolution)
    floor = real_floor(images, fingerprint, metrics, n, splits=splits, seed=seed, device=torch.device(device),
                       batch_size=batch_size, backend=backend, options=options)
    return {**floor, "real": {"name": real, "fingerprint": fingerprint, "n": int(images.shape[0]),
                              "resolution": int(images.shape[-1])}}


def _frechet_metric(metrics: List[str], field: str) -> Any:
    """The one Fréchet-distance metric class a statistics file serves."""
    from harness.metrics.feature_metrics import _Frechet
    from harness.registry import METRICS

    frechet = sorted(n for n in METRICS.names() if issubclass(METRICS.get(n).obj, _Frechet))
    if len(metrics) != 1 or metrics[0] not in frechet:
        raise ConfigError("--metrics", ",".join(metrics), f"exactly one Fréchet distance metric with {field} "
                          f"({', '.join(frechet)}): a .npz holds only mu and sigma")
    return METRICS.get(metrics[0]).obj


def _reference_stats(path: str, metrics: List[str], dev: torch.device, backend: Optional[str]) -> Dict[str, Any]:
    from harness.metrics.feature_metrics import extractor
    from harness.metrics.reference_stats import load_stats

    cls = _frechet_metric(metrics, "--real STATS.npz")
    ext = extractor(cls.extractor_name, cls.pipeline, dev, backend)
    return load_stats(Path(path), metrics[0], ext.protocol())


def _save_stats(real: str, metrics: List[str], path: str, resolution: Optional[int], device: str,
                backend: Optional[str]) -> Dict[str, Any]:
    from harness.metrics.feature_metrics import extractor
    from harness.metrics.reference_stats import save_stats
    from harness.metrics.stats import GaussianStats

    cls = _frechet_metric(metrics, "--save-stats")
    images, fingerprint = _images(real, resolution)
    if images.shape[0] < 2:
        raise ConfigError("--real", real, "at least 2 images for a covariance")
    ext = extractor(cls.extractor_name, cls.pipeline, torch.device(device), backend)
    stats = GaussianStats.of(ext.features(images.to(device)))
    written = save_stats(Path(path), stats, ext.protocol(), fingerprint)
    return {"saved": str(written), "metric": metrics[0], "n": stats.n, "dim": int(stats.mu.shape[0]),
            "protocol": ext.protocol(), "real": {"name": real, "fingerprint": fingerprint, "n": stats.n,
                                                 "resolution": int(images.shape[-1])}}
