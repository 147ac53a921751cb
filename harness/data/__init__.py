"""Image datasets for trials: registered sources, imported folders and HDF5 files.

On disk a dataset is HDF5 in BigGAN-PyTorch's layout (see :mod:`harness.data.hdf5`),
built once into the cache (``ganbench data build NAME``) and loaded by name. In memory a
trial holds the whole set as one tensor on its device (few-shot sets are small), see
:class:`TrainingData`.

A dataset source is a class registered in ``harness.registry.DATASETS`` with a
``card`` (what, licence, source, purpose) and ``build(resolution) -> ImageSet``;
``procedural`` sources are built in memory on every load instead of from the cache.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import ConfigError
from harness.registry import DATASETS


@dataclass
class ImageSet:
    """uint8 images N x C x H x W with where they came from."""

    images: np.ndarray
    name: str
    info: Dict[str, Any] = field(default_factory=dict)
    labels: Optional[np.ndarray] = None

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.images)

    @cached_property
    def rgb_fingerprint(self) -> str:
        """The fingerprint of the RGB channels alone: the reference metrics compare against,
        the same for a 4-channel (RGB + mask) set as for its 3-channel version."""
        return self.fingerprint if self.images.shape[1] <= 3 else fingerprint(self.images[:, :3])

    def rgb_tensor(self) -> "torch.Tensor":
        """The RGB channels as floats in [-1, 1] on the CPU: what metrics compare against."""
        return torch.from_numpy(self.images[:, :3].copy()).float().div(127.5).sub(1)


def fingerprint(images: np.ndarray) -> str:
    """sha256 of the pixel bytes and shape: equal iff the data are equal."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


class DatasetSource:
    """A registered dataset: a card, a default resolution, and how to build it."""

    card: Dict[str, Any] = {}
    procedural = False  # built in memory on every load, never cached
    default_resolution = 32

    def __init__(self, params: Any = None):
        self.params = params

    def build(self, resolution: int) -> ImageSet:
        raise NotImplementedError


def known_dataset(name: str) -> bool:
    from harness.data.cache import built_resolutions

    return name in DATASETS or bool(built_resolutions(name))


# Datasets stay loaded in a worker process: a reused (Ray) worker running trial after
# trial on the same dataset reads and converts it once. Keyed by everything that
# defines the pixels, including the file's identity, so a rebuilt file is reloaded.
_LOADED: "OrderedDict[tuple, ImageSet]" = OrderedDict()
_LOADED_MAX = 4


def _load_key(spec: Any) -> tuple:
    from harness.data.cache import dataset_path

    if spec.is_path():
        path = spec.name
    elif spec.name in DATASETS and DATASETS.get(spec.name).obj.procedural:
        path = None
    else:
        path = str(dataset_path(spec.name, spec.resolution))
    stamp = None
    if path is not None:
        try:
            st = os.stat(path)
            stamp = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = (path, None)
    kwargs = tuple(sorted((k, repr(v)) for k, v in (spec.kwargs or {}).items()))
    return (spec.name, spec.resolution, spec.channels, spec.limit, kwargs, stamp)


def load_image_set(spec: Any) -> ImageSet:
    """The uint8 images a DatasetSpec names, at its resolution and channel count (cached
    per process; the returned set must not be modified)."""
    key = _load_key(spec)
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    image_set = _load_image_set(spec)
    image_set.images.setflags(write=False)
    _LOADED[key] = image_set
    while len(_LOADED) > _LOADED_MAX:
        _LOADED.popitem(last=False)
    return image_set


def _load_image_set(spec: Any) -> ImageSet:
    from harness.data.cache import built_resolutions, dataset_path
    from harness.data.hdf5 import read_hdf5

    if spec.is_path():
        image_set = read_hdf5(spec.name)
    elif spec.name in DATASETS and DATASETS.get(spec.name).obj.procedural:
        source = DATASETS.build(spec.name, spec.kwargs, "dataset.name")
        image_set = source.build(spec.resolution)
    else:
        path = dataset_path(spec.name, spec.resolution)
        if not path.exists():
            built = built_resolutions(spec.name)
            hint = f" (built here at: {', '.join(map(str, built))})" if built else ""
            how = (f"run `ganbench data build {spec.name} --resolution {spec.resolution}`" if spec.name in DATASETS
                   else f"run `ganbench data import FOLDER --name {spec.name} --resolution {spec.resolution}`")
            raise ConfigError(
                "dataset.resolution" if built else "dataset.name", spec.resolution if built else spec.name,
                f"a built dataset: {how}{hint}",
            )
        image_set = read_hdf5(str(path))
    return conform(image_set, spec.resolution, spec.channels, spec.limit)


def conform(image_set: ImageSet, resolution: int, channels: int, limit: Optional[int]) -> ImageSet:
    images = image_set.images
    if limit is not None:
        images = images[:limit]
    c = images.shape[1]
    if c == 1:
        images = np.repeat(images, 3, axis=1)
    elif c == 4 and channels == 3:
        images = images[:, :3]
    elif c == 3 and channels == 4:
        raise ConfigError("dataset.channels", channels, f"3 ({image_set.name} has no mask channel)")
    elif c not in (3, 4):
        raise ConfigError("dataset.name", image_set.name, f"images with 1, 3 or 4 channels (got {c})")
    if images.shape[2] != resolution or images.shape[3] != resolution:
        # Area/antialiased resampling; recorded so the record says the data were resized.
        t = torch.from_numpy(images).float()
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        images = t.round().clamp(0, 255).to(torch.uint8).numpy()
        image_set.info["resized_to"] = resolution
    labels = image_set.labels[:limit] if image_set.labels is not None and limit is not None else image_set.labels
    return ImageSet(np.ascontiguousarray(images), image_set.name, dict(image_set.info), labels)


class TrainingData:
    """A dataset resident on the trial's device as floats in [-1, 1]."""

    def __init__(self, image_set: ImageSet, device: torch.device, hflip: bool = False):
        self.name = image_set.name
        self.fingerprint = image_set.fingerprint
        # Metrics compare RGB: their reference is the RGB pixels, so a 4-channel (RGB + mask)
        # trial and a 3-channel one of the same images share one reference (and protocol).
        self.rgb_fingerprint = image_set.rgb_fingerprint
        self.info = image_set.info
        self.images = torch.from_numpy(image_set.images.copy()).to(device).float().div_(127.5).sub_(1.0)
        self.hflip = hflip
        self.device = device

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def rgb(self) -> torch.Tensor:
        """The RGB view (metrics compare colour images; the mask stays out)."""
        return self.images[:, :3]

    def batch(self, indices: torch.Tensor, flips: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.images[indices.to(self.device)]
        if self.hflip and flips is not None:
            flips = flips.to(self.device).view(-1, 1, 1, 1)
            x = torch.where(flips, x.flip(3), x)
        return x
