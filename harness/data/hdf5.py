"""HDF5 dataset files in BigGAN-PyTorch's layout, plus a card in the attributes.

``imgs``: uint8 N x C x H x W (C = 3, or 4 = RGB + mask); optional ``labels`` int64.
Attributes: name, source, version, licence, resolution, count, fingerprint, build
(the conversion recipe and parameters), description, purpose. Files written by
BigGAN-PyTorch's ``make_hdf5.py`` (``imgs``, ``labels``, no attributes) load unchanged.

A file is checked from its metadata before any pixel is read (:func:`check_images`):
``imgs`` must be a dataset (not a group) of uint8 N x C x S x S with N >= 1, C in 1, 3, 4
and 4 <= S <= ``MAX_SIDE``, and must store data for what it declares, so a kilobyte
file declaring gigabytes of never-written images is refused instead of allocated.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import numpy as np

from harness.errors import ConfigError
from harness.files import atomic_target

MAX_SIDE = 4096
# deflate cannot shrink data by more than ~1032:1, so a file storing under 1/1024 of
# the bytes it declares holds chunks that were never written (the fill value)
MAX_RATIO = 1024


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


def _describe(node: Any) -> str:
    import h5py

    if isinstance(node, h5py.Dataset):
        return f"a {node.dtype} dataset of shape {node.shape}"
    return "a group" if isinstance(node, h5py.Group) else type(node).__name__


def check_images(imgs: Any, path: str, field: str = "dataset.name") -> None:
    """Refuse an ``imgs`` node that is not N x C x S x S uint8 images actually stored
    (from its metadata: nothing is read)."""
    import h5py

    expected = "an HDF5 file whose 'imgs' is a uint8 dataset N x C x S x S (N >= 1 images, C = 1, 3 or 4, " \
               f"4 <= S <= {MAX_SIDE})"
    if imgs is None:
        raise ConfigError(field, path, expected + "; it has no 'imgs'")
    if not isinstance(imgs, h5py.Dataset) or imgs.dtype != np.uint8 or len(imgs.shape) != 4:
        raise ConfigError(field, path, f"{expected}; got {_describe(imgs)}")
    n, c, h, w = imgs.shape
    if n < 1:
        raise ConfigError(field, path, f"{expected}; it holds no images")
    if c not in (1, 3, 4):
        raise ConfigError(field, path, f"{expected}; got {c} channels")
    if h != w:
        raise ConfigError(field, path, f"{expected}; its images are {h} x {w}, not square (`ganbench data import` "
                          "crops a folder of images square)")
    if not 4 <= h <= MAX_SIDE:
        raise ConfigError(field, path, f"{expected}; got {h} px")
    declared = n * c * h * w
    stored = imgs.id.get_storage_size()
    if declared > (1 << 20) and stored * MAX_RATIO < declared:
        raise ConfigError(field, path, f"{expected}, holding the data it declares: {n} images ({declared:,} bytes) "
                          f"declared, {stored:,} bytes stored")


def read_hdf5(path: str, field: str = "dataset.name"):
    import h5py

    from harness.data import ImageSet

    try:
        with h5py.File(path, "r") as fh:
            imgs = fh.get("imgs")
            check_images(imgs, str(path), field)
            labels = None
            if "labels" in fh:
                lab = fh["labels"]
                if not isinstance(lab, h5py.Dataset) or lab.shape != (imgs.shape[0],) or lab.dtype.kind not in "iu":
                    raise ConfigError(field, str(path), f"labels as integers, one per image ({imgs.shape[0]}); got "
                                      f"{_describe(lab)}")
                labels = lab[()]
            images = imgs[()]
            info = {str(k): (v.item() if hasattr(v, "item") else v) for k, v in fh.attrs.items()}
    except OSError as err:
        raise ConfigError(field, str(path), f"a readable HDF5 file ({err})") from None
    info.pop("fingerprint", None)  # recomputed from the pixels, never trusted from the file
    return ImageSet(images, str(info.get("name", Path(path).stem)), info, labels)
