"""Metrics in a pretrained network's feature space: Fréchet distance, KID, PR/DC, the
memorisation check, and the Inception Score of its classifier head.

Names say which network: ``fd_effnet`` / ``kid_effnet`` / ``prdc_effnet`` use the offline
EfficientNet-Lite0 (never called "FID"); ``fid`` / ``kid_inception`` use the standard
Inception-v3 with torch-fidelity's TF-exact pipeline, ``fid_legacy`` pytorch-fid's,
``fid_clean`` clean-fid's.

Options (``eval.metric_options.<metric>``: KID's subset size and count, the k of PR/DC,
the memorisation threshold) are validated against each metric's options dataclass and
recorded in its protocol, so values under different options never pool.

Real features are computed once per (dataset fingerprint, extractor weights, pipeline,
n) and cached on disk under ``$GANBENCH_CACHE/stats`` (shared by every trial and worker
of the machine); generated features are computed once per evaluation and shared by all
metrics of that extractor. Fakes are generated in memory in batches, never written out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from harness.data.cache import cache_dir
from harness.interfaces import EvalContext, Metric
from harness.metrics.extractors import EXTRACTORS, FeatureExtractor
from harness.metrics.onnx_backend import requested_backend
from harness.metrics.stats import GaussianStats, bootstrap_frechet, density_coverage, frechet_distance, \
    frechet_infinity, inception_score, kernel_inception_distance, memorization, precision_recall
from harness.registry import METRICS
from harness.files import atomic_target

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


def images_at(ctx: EvalContext, indices: List[int]) -> torch.Tensor:
    """The generated images at ``indices`` of this evaluation's fixed-noise sequence (drawn
    again up to the largest index: generation is deterministic), in [-1, 1] on the CPU."""
    wanted, out, start = sorted(set(int(i) for i in indices)), {}, 0
    if not wanted:
        return torch.zeros(0)
    for batch in ctx.generate(wanted[-1] + 1):
        for i in wanted:
            if start <= i < start + batch.shape[0]:
                out[i] = batch[i - start, :3].float().cpu()
        start += batch.shape[0]
    return torch.stack([out[i] for i in indices])


def frechet_of(real: np.ndarray, fake: np.ndarray, metric: "_FeatureMetric", ctx: EvalContext) -> float:
    """The Fréchet distance of this evaluation's features in ``metric``'s space, computed
    once and shared (the FD metric and the memorisation-penalised FD need the same one)."""
    key = ("frechet", metric.extractor_name, metric.pipeline)
    if key not in ctx.memo:
        r, f = GaussianStats.of(real), GaussianStats.of(fake)
        ctx.memo[key] = frechet_distance(r.mu, r.sigma, f.mu, f.sigma)
    return ctx.memo[key]


class _FeatureMetric(Metric):
    extractor_name = ""
    pipeline = ""
    key = ""

    @classmethod
    def prepare(cls, device: torch.device) -> None:
        extractor(cls.extractor_name, cls.pipeline, device)

    def keys(self) -> Dict[str, bool]:
        return {self.key: bool(self.higher_is_better)}

    def minimum_sizes(self) -> Dict[str, Any]:
        return {"n_fake": (2, "a covariance needs two images"), "n_real": (2, "a covariance needs two images")}

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
    def compute(self, ctx: EvalContext) -> Dict[str, float]:
        if ctx.reference_stats is None:
            return super().compute(ctx)
        ext = self._extractor(ctx)  # statistics from a .npz, checked against this extractor's protocol
        ref, f = ctx.reference_stats, GaussianStats.of(fake_features(ext, ctx))
        self._protocol.update(reference_stats=ref["sha256"],
                              reference_pipeline="verified" if ref["verified"] else "unverified")
        return {self.key: frechet_distance(ref["stats"].mu, ref["stats"].sigma, f.mu, f.sigma)}

    def measure(self, real, fake, ctx):
        return {self.key: frechet_of(real, fake, self, ctx)}


@dataclass
class KIDOptions:
    # Images per subset (null = min(1000, the smaller set)); both sets need at least this many.
    subset_size: Optional[int] = field(default=None, metadata={"min": 2, "max": 10 ** 6})
    # Random subsets averaged (their std is reported as <key>_std).
    subsets: int = field(default=100, metadata={"min": 1, "max": 10000})


class _KID(_FeatureMetric):
    scale = "MMD² (_std: over subsets)"
    description = ("Kernel Inception Distance: unbiased squared MMD between real and generated features with a "
                   "cubic polynomial kernel, mean over random subsets (_std: their std); 0 = the same "
                   "distribution, unbiased at small n.")

    @property
    def options(self) -> KIDOptions:
        return self.params or KIDOptions()

    def keys(self):
        return {self.key: False, f"{self.key}_std": False}

    def minimum_sizes(self):
        m = self.options.subset_size or 2
        why = f"{self.key} subset_size = {m}" if self.options.subset_size else "KID needs two images per subset"
        return {"n_fake": (m, why), "n_real": (m, why)}

    def measure(self, real, fake, ctx):
        o = self.options
        out = kernel_inception_distance(real, fake, subsets=o.subsets, subset_size=o.subset_size, seed=ctx.seed)
        self.subset = out["kid_subset_size"]
        return {self.key: out["kid"], f"{self.key}_std": out["kid_std"]}

    def protocol(self):
        return {**super().protocol(), "kid_subset_size": getattr(self, "subset", self.options.subset_size),
                "kid_subsets": self.options.subsets, "kernel": "(x.y/d + 1)^3"}


@dataclass
class PRDCOptions:
    # k of the k-NN manifolds of precision and recall (Kynkäänniemi et al. use 3).
    k_precision_recall: int = field(default=3, metadata={"min": 1, "max": 100})
    # k of density and coverage (Naeem et al. use 5).
    k_density_coverage: int = field(default=5, metadata={"min": 1, "max": 100})


class _PRDC(_FeatureMetric):
    scale = "fraction in [0, 1] (density can exceed 1)"
    description = ("Precision (generated images inside the real manifold), recall (real images inside the "
                   "generated manifold), both with k-NN radii (k_precision_recall, default 3), density and "
                   "coverage (k_density_coverage, default 5; Naeem et al. 2020) in the feature space.")
    parts = ("precision", "recall", "density", "coverage")

    @property
    def options(self) -> PRDCOptions:
        return self.params or PRDCOptions()

    def keys(self):
        return {f"{part}_{self.suffix}": True for part in self.parts}

    def minimum_sizes(self):
        o = self.options
        k_pr, k_dc = o.k_precision_recall, o.k_density_coverage
        return {"n_fake": (k_pr + 1, f"recall's k-NN radii with k_precision_recall = {k_pr} need k + 1 images"),
                "n_real": (max(k_pr, k_dc) + 1, f"k-NN radii with k = {max(k_pr, k_dc)} "
                                                f"(k_precision_recall / k_density_coverage) need k + 1 images")}

    def measure(self, real, fake, ctx):
        o = self.options
        out = {**precision_recall(real, fake, k=o.k_precision_recall),
               **density_coverage(real, fake, k=o.k_density_coverage)}
        return {f"{k}_{self.suffix}": v for k, v in out.items()}

    def protocol(self):
        return {**super().protocol(), "k_precision_recall": self.options.k_precision_recall,
                "k_density_coverage": self.options.k_density_coverage, "ties": "pr <=, dc < (prdc 0.2)"}


@dataclass
class MemorizationOptions:
    # A generated image is a near-copy when its distance to the nearest training image is
    # below this fraction of that training image's own nearest-neighbour distance.
    threshold: float = field(default=0.5, metadata={"min_exclusive": 0.0, "max": 10.0})
    # MiFID's epsilon: the mean cosine distance to the nearest training image counts as
    # memorisation only below it (Kaggle's generative competitions and torchmetrics: 0.1).
    cosine_eps: float = field(default=0.1, metadata={"min_exclusive": 0.0, "max": 1.0})
    # Closest generated/training pairs kept for the report (0 = none).
    pairs: int = field(default=8, metadata={"min": 0, "max": 64})


class _Memorization(_FeatureMetric):
    """Does the generator copy its training images? Each generated image's distance to its
    nearest training image, relative to that training image's distance to its own nearest
    training neighbour: ``memorization_*`` is the fraction of near-copies (ratio below
    ``threshold``), ``nn_ratio_*`` the median ratio, ``mifid_*`` the Fréchet distance
    divided by MiFID's thresholded memorisation distance (mean cosine distance to the
    nearest training image when below ``cosine_eps``, else 1: no penalty)."""
    scale = "fraction of near-copies in [0, 1]; ratio; penalised squared feature distance"
    description = ("Computed against the trial's training images (the reference set): 0 near-copies and a median "
                   "ratio near 1 mean new images about as far from the training set as its images are from each "
                   "other; a copying generator scores a fraction near 1 and a MiFID far above its FD.")

    @property
    def options(self) -> MemorizationOptions:
        return self.params or MemorizationOptions()

    def keys(self):
        return {f"memorization_{self.suffix}": False, f"nn_ratio_{self.suffix}": True,
                f"mifid_{self.suffix}": False}

    def minimum_sizes(self):
        return {"n_fake": (2, "the penalised Fréchet distance needs a covariance: two images"),
                "n_real": (2, "each training image's nearest-neighbour distance needs another training image")}

    def measure(self, real, fake, ctx):
        o = self.options
        out = memorization(real, fake, threshold=o.threshold, cosine_eps=o.cosine_eps)
        fd = frechet_of(real, fake, self, ctx)
        if o.pairs and ctx.want_artifacts:
            order = np.argsort(out["ratio"], kind="stable")[:o.pairs]
            ctx.artifacts[f"nearest_pairs.{self.suffix}"] = {
                "fake": images_at(ctx, [int(i) for i in order]),
                "real": ctx.real[torch.as_tensor(out["nearest"][order])][:, :3].float().cpu()}
        return {f"memorization_{self.suffix}": out["fraction"], f"nn_ratio_{self.suffix}": out["median_ratio"],
                f"mifid_{self.suffix}": fd * out["penalty"]}

    def protocol(self):
        o = self.options
        return {**super().protocol(), "threshold": o.threshold, "cosine_eps": o.cosine_eps,
                "distance": "euclidean (ratio), 1 - |cos| (MiFID)"}


@dataclass
class FDInfinityOptions:
    # Subset sizes of the generated set fitted against 1/N (Chong & Forsyth use 15).
    points: int = field(default=15, metadata={"min": 2, "max": 100})
    # The smallest subset, as a fraction of the generated set (theirs: 5k of 50k = 0.1).
    min_fraction: float = field(default=0.1, metadata={"min_exclusive": 0.0, "max": 1.0})


class _FDInfinity(_FeatureMetric):
    """Opt-in (one eigendecomposition per subset size): the Fréchet distance extrapolated
    to infinitely many generated samples, FD∞ (Chong & Forsyth 2020): FD of random subsets
    of sizes N evenly spaced from min_fraction · n to n, a least-squares line in 1/N, its
    value at 1/N = 0. Removes the generated side's small-n bias, not the reference's."""
    scale = "squared feature distance"
    description = "Effectively unbiased in the number of generated images; compare at equal reference sets."

    @property
    def options(self) -> FDInfinityOptions:
        return self.params or FDInfinityOptions()

    def minimum_sizes(self):
        o = self.options
        least = max(2 * o.points, int(np.ceil(2 / o.min_fraction)))
        return {"n_fake": (least, f"{o.points} subset sizes from min_fraction = {o.min_fraction} of the generated "
                                  f"images, each at least 2"),
                "n_real": (2, "a covariance needs two images")}

    def measure(self, real, fake, ctx):
        o = self.options
        out = frechet_infinity(real, fake, points=o.points, min_fraction=o.min_fraction, seed=ctx.seed)
        return {self.key: out["fd_inf"]}

    def protocol(self):
        o = self.options
        return {**super().protocol(), "points": o.points, "min_fraction": o.min_fraction,
                "fit": "least squares in 1/N, intercept"}


@dataclass
class BootstrapOptions:
    # Bootstrap resamples (each one eigendecomposition, two with resample_real).
    resamples: int = field(default=50, metadata={"min": 10, "max": 2000})
    # Central interval level.
    level: float = field(default=0.95, metadata={"min_exclusive": 0.0, "max": 0.999})
    # Resample the reference set too (the interval then covers both sets' sampling).
    resample_real: bool = True


class _FDBootstrap(_FeatureMetric):
    """Opt-in (``resamples`` eigendecompositions): a percentile bootstrap interval of one
    evaluation's Fréchet distance (generated and, by default, reference images drawn with
    replacement): ``<key>_low`` / ``<key>_high``, ``<key>_std``. How far one evaluation's
    number could move by sampling alone; seeds vary more than that."""
    scale = "squared feature distance"
    description = "The interval of a single evaluation, not of a configuration over seeds."

    @property
    def options(self) -> BootstrapOptions:
        return self.params or BootstrapOptions()

    def keys(self):
        return {f"{self.key}_low": False, f"{self.key}_high": False, f"{self.key}_std": False}

    def measure(self, real, fake, ctx):
        o = self.options
        out = bootstrap_frechet(real, fake, resamples=o.resamples, level=o.level, resample_real=o.resample_real,
                                seed=ctx.seed)
        return {f"{self.key}_low": out["low"], f"{self.key}_high": out["high"], f"{self.key}_std": out["std"]}

    def protocol(self):
        o = self.options
        return {**super().protocol(), "resamples": o.resamples, "level": o.level, "resample_real": o.resample_real,
                "interval": "percentile"}


class _IS(_FeatureMetric):
    """Inception Score of the generated images alone (no reference set): the classifier
    head's class probabilities, 10 splits; higher is better."""
    higher_is_better = True
    splits = 10
    shuffle_seed: Optional[int] = None
    scale = "exp(KL), 1 to the number of classes (_std: over splits)"

    def keys(self):
        return {self.key: True, f"{self.key}_std": False}

    def minimum_sizes(self):
        return {"n_fake": (1, "one image"), "n_real": (0, "no reference set")}

    def compute(self, ctx: EvalContext) -> Dict[str, float]:
        ext = self._extractor(ctx)
        out = inception_score(ext.logits(fake_features(ext, ctx)), splits=self.splits,
                              shuffle_seed=self.shuffle_seed)
        self._used_splits = out["splits"]
        return {self.key: out["is"], f"{self.key}_std": out["is_std"]}

    def protocol(self):
        return {**super().protocol(), "classifier": self.classifier, "splits": getattr(self, "_used_splits",
                                                                                    self.splits),
                "parts": "rows i*N//splits", "shuffle_seed": self.shuffle_seed}


class _EffNet:
    extractor_name, pipeline = "efficientnet-lite0", "bilinear224"


class _Inception:
    extractor_name, pipeline = "inception", "tf_compat"


@METRICS.register("fd_effnet")
class FDEffNet(_EffNet, _Frechet):
    """Fréchet distance in EfficientNet-Lite0 features (offline default)."""
    key = "fd_effnet"


@METRICS.register("kid_effnet", params=KIDOptions)
class KIDEffNet(_EffNet, _KID):
    key = "kid_effnet"


@METRICS.register("prdc_effnet", params=PRDCOptions)
class PRDCEffNet(_EffNet, _PRDC):
    """precision/recall (k=3) and density/coverage (k=5); higher is better for all four."""
    higher_is_better = True
    suffix = "effnet"


@METRICS.register("memorization_effnet", params=MemorizationOptions)
class MemorizationEffNet(_EffNet, _Memorization):
    suffix = "effnet"


@METRICS.register("is_effnet")
class ISEffNet(_EffNet, _IS):
    """Inception Score in EfficientNet-Lite0's ImageNet classes (seed D's metric, offline);
    not comparable with the Inception-v3 IS of papers."""
    key = "is_effnet"
    classifier = "ImageNet-1k head"


@METRICS.register("is_inception")
class ISInception(_Inception, _IS):
    """The Inception Score of papers: the FID Inception-v3's 1,008 logits without the fc bias
    (torch-fidelity's ``logits_unbiased``), 10 splits after torch-fidelity's shuffle (seed 2020)."""
    key = "is_inception"
    classifier = "FID Inception-v3 fc, unbiased logits (1,008)"
    shuffle_seed = 2020


@METRICS.register("fid")
class FID(_Inception, _Frechet):
    """Standard FID: Inception-v3 pool3, torch-fidelity's TF-exact pipeline."""
    key = "fid"


@METRICS.register("fid_legacy")
class FIDLegacy(_Inception, _Frechet):
    """FID with pytorch-fid's pipeline (PyTorch bilinear resize)."""
    key = "fid_legacy"
    pipeline = "legacy_pytorch"


@METRICS.register("fid_clean")
class FIDClean(_Inception, _Frechet):
    """FID with clean-fid's ``clean`` pipeline (PIL bicubic resize with antialiasing)."""
    key = "fid_clean"
    pipeline = "clean"


@METRICS.register("kid_inception", params=KIDOptions)
class KIDInception(_Inception, _KID):
    key = "kid_inception"


@METRICS.register("memorization_inception", params=MemorizationOptions)
class MemorizationInception(_Inception, _Memorization):
    suffix = "inception"


@METRICS.register("fd_inf_effnet", params=FDInfinityOptions)
class FDInfEffNet(_EffNet, _FDInfinity):
    key = "fd_inf_effnet"


@METRICS.register("fid_inf", params=FDInfinityOptions)
class FIDInf(_Inception, _FDInfinity):
    key = "fid_inf"


@METRICS.register("fd_bootstrap_effnet", params=BootstrapOptions)
class FDBootstrapEffNet(_EffNet, _FDBootstrap):
    key = "fd_effnet_boot"


@METRICS.register("fid_bootstrap", params=BootstrapOptions)
class FIDBootstrap(_Inception, _FDBootstrap):
    key = "fid_boot"
