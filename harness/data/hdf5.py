"""HDF5 dataset files in BigGAN-PyTorch's layout, plus a card in the attributes.

``imgs``: uint8 N x C x H x W (C = 3, or 4 = RGB + mask); optional ``labels`` int64.
Attributes: name, source, version, licence, resolution, count, fingerprint, build
(the conversion recipe and parameters), description, purpose. Files written by
BigGAN-PyTorch's ``make_hdf5.py`` (``imgs``, ``labels``, no attributes) load unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import numpy as np

from harness.errors import ConfigError
from harness.store import atomic_target


def write_hdf5(path: Path, image_set: Any) -> Path:
    """Write atomically (temp file in the same folder, fsync, rename)."""
    import h5py

    with atomic_target(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            fh.create_dataset("imgs", data=image_set.images, chunks=True, compression="gzip", compression_opts=4)
            if image_set.labels is not None:
                fh.create_dataset("labels", data=np.asarray(image_set.labels, dtype=np.int64))
            card = dict(image_set.info)
            card.update({"name": image_set.name, "count": int(image_set.images.shape[0]),
                         "resolution": int(image_set.images.shape[-1]), "channels": int(image_set.images.shape[1]),
                         "fingerprint": image_set.fingerprint})
            for key, value in card.items():
                fh.attrs[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
    return path


def read_card(path: Path) -> Dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as fh:
        return {str(k): (v.item() if hasattr(v, "item") else v) for k, v in fh.attrs.items()}


def read_hdf5(path: str, field: str = "dataset.name"):
    import h5py

    from harness.data import ImageSet

    try:
        with h5py.File(path, "r") as fh:
            if "imgs" not in fh:
                raise ConfigError(field, str(path), "an HDF5 file with an 'imgs' dataset (N x C x H x W uint8)")
            images = fh["imgs"][()]
            labels = fh["labels"][()] if "labels" in fh else None
            info = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in fh.attrs.items()}
    except OSError as err:
        raise ConfigError(field, str(path), f"a readable HDF5 file ({err})") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ConfigError(field, str(path), f"imgs as uint8 N x C x H x W (got {images.dtype} {images.shape})")
    info.pop("fingerprint", None)  # recomputed from the pixels, never trusted from the file
    return ImageSet(images, str(info.get("name", Path(path).stem)), info, labels)
