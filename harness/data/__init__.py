"""Image datasets for trials: registered sources and HDF5 files.

On disk a dataset is HDF5 in BigGAN-PyTorch's layout: ``imgs`` uint8 N x C x H x W
(C = 3, or 4 = RGB + mask) and optional ``labels``. In memory a trial holds the whole
set as one tensor on its device (few-shot sets are small), see :class:`TrainingData`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
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

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.images)


def fingerprint(images: np.ndarray) -> str:
    """sha256 of the pixel bytes and shape: equal iff the data are equal."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return h.hexdigest()


def read_hdf5(path: str) -> ImageSet:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            if "imgs" not in fh:
                raise ConfigError("dataset.name", path, "an HDF5 file with an 'imgs' dataset (N x C x H x W uint8)")
            images = fh["imgs"][()]
            info = {k: (v.item() if hasattr(v, "item") else v) for k, v in fh.attrs.items()}
    except OSError as err:
        raise ConfigError("dataset.name", path, f"a readable HDF5 file ({err})") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ConfigError("dataset.name", path, f"imgs as uint8 N x C x H x W (got {images.dtype} {images.shape})")
    return ImageSet(images, str(info.get("name", path)), {str(k): v for k, v in info.items()})


def load_image_set(spec: Any) -> ImageSet:
    """The uint8 images a DatasetSpec names, at its resolution and channel count."""
    if spec.is_path():
        image_set = read_hdf5(spec.name)
    else:
        source = DATASETS.build(spec.name, spec.kwargs, "dataset.name")
        image_set = source.load(resolution=spec.resolution, channels=spec.channels)
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
    return ImageSet(np.ascontiguousarray(images), image_set.name, dict(image_set.info))


class TrainingData:
    """A dataset resident on the trial's device as floats in [-1, 1]."""

    def __init__(self, image_set: ImageSet, device: torch.device, hflip: bool = False):
        self.name = image_set.name
        self.fingerprint = image_set.fingerprint
        self.info = image_set.info
        self.images = torch.from_numpy(image_set.images).to(device).float().div_(127.5).sub_(1.0)
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
