"""Metrics in a pretrained network's feature space: Fréchet distance, KID, PR/DC, and the
Inception Score of its classifier head.

Names say which network: ``fd_effnet`` / ``kid_effnet`` / ``prdc_effnet`` use the offline
EfficientNet-Lite0 (never called "FID"); ``fid`` / ``kid_inception`` use the standard
Inception-v3 with torch-fidelity's TF-exact pipeline, ``fid_legacy`` pytorch-fid's.

Real features are computed once per (dataset fingerprint, extractor weights, pipeline,
n) and cached on disk under ``$GANBENCH_CACHE/stats`` (shared by every trial and worker
of the machine); generated features are computed once per evaluation and shared by all
metrics of that extractor. Fakes are generated in memory in batches, never written out.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from harness.data.cache import cache_dir
from harness.interfaces import EvalContext, Metric
from harness.metrics.extractors import EXTRACTORS, FeatureExtractor
from harness.metrics.onnx_backend import requested_backend
from harness.metrics.stats import GaussianStats, density_coverage, frechet_distance, inception_score, \
    kernel_inception_distance, precision_recall
from harness.registry import METRICS
from harness.store import atomic_target

_EXTRACTORS: Dict[Tuple[Any, ...], FeatureExtractor] = {}


def extractor(name: str, pipeline: str, device: torch.device, backend: Optional[str] = None) -> FeatureExtractor:
    """The process's extractor for this device, backend and torch thread count (a trial's
    ``threads``; ONNX Runtime sessions use the same count)."""
    backend = requested_backend(backend)
    key = (name, pipeline, str(device), backend, torch.get_num_threads())
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = EXTRACTORS.get(name).obj(device, pipeline, backend=backend)
    return _EXTRACTORS[key]


def real_features(ext: FeatureExtractor, ctx: EvalContext) -> np.ndarray:
    n = int(ctx.real.shape[0])
    key = f"{ctx.dataset_fingerprint[:32]}-{ext.name}-{ext.weights_sha256[:16]}-{ext.pipeline}-{n}"
    if key in ctx.cache:
        return ctx.cache[key]
    path = cache_dir() / "stats" / f"{key}.npy"
    if ctx.dataset_fingerprint and path.exists():
        feats = np.load(path, allow_pickle=False)
    else:
        feats = ext.features(ctx.real)
        if ctx.dataset_fingerprint:
            with atomic_target(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, feats, allow_pickle=False)
    ctx.cache[key] = feats
    return feats


def fake_features(ext: FeatureExtractor, ctx: EvalContext) -> np.ndarray:
    key = ("fake", ext.name, ext.pipeline)
    if key not in ctx.memo:
        ctx.memo[key] = np.concatenate([ext.features(batch) for batch in ctx.generate(ctx.n_fake)], axis=0)
    return ctx.memo[key]


class _FeatureMetric(Metric):
    extractor_name = ""
    pipeline = ""

    @classmethod
    def prepare(cls, device: torch.device) -> None:
        extractor(cls.extractor_name, cls.pipeline, device)

    def compute(self, ctx: EvalContext) -> Dict[str, float]:
        ext = self._extractor(ctx)
        return self.measure(real_features(ext, ctx), fake_features(ext, ctx), ctx)

    def _extractor(self, ctx: EvalContext) -> FeatureExtractor:
        ext = extractor(self.extractor_name, self.pipeline, ctx.device, ctx.feature_backend)
        self._protocol = ext.protocol()
        self._environment = {ext.name: ext.backend_info()}
        return ext

    def environment(self) -> Dict[str, Any]:
        return dict(getattr(self, "_environment", {}))

    def measure(self, real: np.ndarray, fake: np.ndarray, ctx: EvalContext) -> Dict[str, float]:
        raise NotImplementedError

    def protocol(self) -> Dict[str, Any]:
        return dict(getattr(self, "_protocol", {"extractor": self.extractor_name, "pipeline": self.pipeline}))


class _Frechet(_FeatureMetric):
    scale = "squared feature distance"
    description = ("The Fréchet distance between Gaussians fitted to real and generated features; 0 = the same "
                   "mean and covariance; biased upward at small n (report the reference set's own floor).")
    def measure(self, real, fake, ctx):
        r, f = GaussianStats.of(real), GaussianStats.of(fake)
        return {self.key: frechet_distance(r.mu, r.sigma, f.mu, f.sigma)}


class _KID(_FeatureMetric):
    scale = "MMD² (_std: over subsets)"
    description = ("Kernel Inception Distance: unbiased squared MMD between real and generated features with a "
                   "cubic polynomial kernel, mean over 100 subsets (_std: their std); 0 = the same distribution, "
                   "unbiased at small n.")
    def measure(self, real, fake, ctx):
        out = kernel_inception_distance(real, fake, seed=ctx.seed)
        self.subset = out["kid_subset_size"]
        return {self.key: out["kid"], f"{self.key}_std": out["kid_std"]}

    def protocol(self):
        return {**super().protocol(), "kid_subset_size": getattr(self, "subset", None), "kid_subsets": 100,
                "kernel": "(x.y/d + 1)^3"}


class _PRDC(_FeatureMetric):
    scale = "fraction in [0, 1] (density can exceed 1)"
    description = ("Precision (generated images inside the real manifold, k=3), recall (real images inside the "
                   "generated manifold), density and coverage (k=5; Naeem et al. 2020) in the feature space.")
    def measure(self, real, fake, ctx):
        out = {**precision_recall(real, fake, k=3), **density_coverage(real, fake, k=5)}
        return {f"{k}_{self.suffix}": v for k, v in out.items()}

    def protocol(self):
        return {**super().protocol(), "k_precision_recall": 3, "k_density_coverage": 5}


class _IS(_FeatureMetric):
    """Inception Score of the generated images alone (no reference set): the classifier
    head's class probabilities, 10 splits; higher is better."""
    higher_is_better = True
    splits = 10
    scale = "exp(KL), 1 to the number of classes (_std: over splits)"

    def compute(self, ctx: EvalContext) -> Dict[str, float]:
        ext = self._extractor(ctx)
        out = inception_score(ext.logits(fake_features(ext, ctx)), splits=self.splits)
        self._used_splits = out["splits"]
        return {self.key: out["is"], f"{self.key}_std": out["is_std"]}

    def protocol(self):
        return {**super().protocol(), "classifier": "ImageNet-1k head", "splits": getattr(self, "_used_splits",
                                                                                       self.splits)}


class _EffNet:
    extractor_name, pipeline = "efficientnet-lite0", "bilinear224"


class _Inception:
    extractor_name, pipeline = "inception", "tf_compat"


@METRICS.register("fd_effnet")
class FDEffNet(_EffNet, _Frechet):
    """Fréchet distance in EfficientNet-Lite0 features (offline default)."""
    key = "fd_effnet"


@METRICS.register("kid_effnet")
class KIDEffNet(_EffNet, _KID):
    key = "kid_effnet"


@METRICS.register("prdc_effnet")
class PRDCEffNet(_EffNet, _PRDC):
    """precision/recall (k=3) and density/coverage (k=5); higher is better for all four."""
    higher_is_better = True
    suffix = "effnet"


@METRICS.register("is_effnet")
class ISEffNet(_EffNet, _IS):
    """Inception Score in EfficientNet-Lite0's ImageNet classes (seed D's metric, offline);
    not comparable with the Inception-v3 IS of papers."""
    key = "is_effnet"


@METRICS.register("fid")
class FID(_Inception, _Frechet):
    """Standard FID: Inception-v3 pool3, torch-fidelity's TF-exact pipeline."""
    key = "fid"


@METRICS.register("fid_legacy")
class FIDLegacy(_Inception, _Frechet):
    """FID with pytorch-fid's pipeline (PyTorch bilinear resize)."""
    key = "fid_legacy"
    pipeline = "legacy_pytorch"


@METRICS.register("kid_inception")
class KIDInception(_Inception, _KID):
    key = "kid_inception"
