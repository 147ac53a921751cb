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
    images = torch.from_numpy(image_set.images.copy())[:, :3].float().div(127.5).sub(1)
    return images, image_set.rgb_fingerprint


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
            options: Optional[Dict[str, Any]] = None,
            warn: Callable[[str], None] = lambda message: None) -> Dict[str, Any]:
    """Evaluate ``fake`` against ``real`` (or, with ``split``, ``real``'s own floor: its
    halves against each other). ``threads``: torch and ONNX Runtime threads (default:
    every core); ``backend``: the feature backend (auto, torch, onnxruntime)."""
    requested_backend(backend)  # a bad name fails before anything is loaded
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        if split:
            return _floor(real, metrics, n, resolution, device, seed, batch_size, backend, splits, options or {})
        if fake is None:
            raise ConfigError("--fake", None, "a dataset, trial directory or checkpoint (or --split for the floor)")
        if Path(fake).resolve() == Path(real).resolve() or fake == real:
            warn(f"--fake {fake} is the reference set itself: this compares a set with itself (0 for a distance, "
                 f"the best possible, not a floor a generator can reach); `ganbench metric --real {real} --split` "
                 "gives the real-vs-real floor")
        return _measure(real, fake, metrics, n, resolution, device, seed, batch_size, backend, options or {})
    finally:
        torch.set_num_threads(saved)  # a library call leaves the caller's setting as it was


def _random_subset(images: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` images drawn without replacement with ``seed`` (never the first ``count``:
    a dataset's order is often by class)."""
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    return images[order[:count]]


def _measure(real: str, fake: str, metrics: List[str], n: Optional[int], resolution: Optional[int], device: str,
             seed: int, batch_size: int, backend: Optional[str], options: Dict[str, Any]) -> Dict[str, Any]:
    dev = torch.device(device)
    source: Dict[str, Any] = {"fake": fake}
    fake_path = Path(fake)
    truncation = None
    if ("/" in fake or fake.endswith((".pt", ".hdf5", ".h5"))) and not fake_path.exists():
        raise ConfigError("--fake", fake, "an existing trial directory, ckpt-*.pt or .hdf5 file, or a dataset name")
    if fake_path.is_dir() or fake_path.suffix == ".pt":
        G, spec, iteration = generator_from(fake_path, dev)
        resolution = resolution or spec.dataset.resolution
        n_fake = n or spec.eval.n_samples
        truncation = spec.eval.truncation
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
    real_images, real_fp = _images(real, resolution)
    check_sizes(metrics, n_fake, int(real_images.shape[0]), options, fake_path="--n (generated images)",
                real_path=f"--real {real}")
    ctx = EvalContext(real=real_images.to(dev), generate=generate, n_fake=n_fake, device=dev, seed=seed,
                      dataset_fingerprint=real_fp, feature_backend=backend, truncation=truncation, options=options)
    result = evaluate(metrics, ctx)
    result.pop("artifacts", None)
    result["real"] = {"name": real, "fingerprint": real_fp, "n": int(real_images.shape[0]), "resolution": resolution}
    result["fake"] = {**source, "n": n_fake}
    return result


def _floor(real: str, metrics: List[str], n: Optional[int], resolution: Optional[int], device: str, seed: int,
           batch_size: int, backend: Optional[str], splits: int, options: Dict[str, Any]) -> Dict[str, Any]:
    images, fingerprint = _images(real, resolution)
    floor = real_floor(images, fingerprint, metrics, n, splits=splits, seed=seed, device=torch.device(device),
                       batch_size=batch_size, backend=backend, options=options)
    return {**floor, "real": {"name": real, "fingerprint": fingerprint, "n": int(images.shape[0]),
                              "resolution": int(images.shape[-1])}}
