"""Build, import, list and show datasets (what ``ganbench data`` does)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from harness.data import DatasetSource, ImageSet
from harness.data.cache import NAME_RULE, built_datasets, built_resolutions, dataset_path, valid_name
from harness.data.hdf5 import read_card, read_hdf5, write_hdf5
from harness.data.imageops import RECIPE, convert_files, image_files
from harness.errors import ConfigError
from harness.registry import DATASETS


def source(name: str) -> DatasetSource:
    return DATASETS.build(name, None, "NAME")


def check_resolution(resolution: int, field: str = "--resolution") -> None:
    """Refuse a resolution no registered architecture can train at (or outside the
    range a trial config allows), before any image is converted."""
    from harness.registry import ARCHITECTURES
    from harness.spec import DatasetSpec, parse_trial
    from harness.validation import build_dataclass

    try:
        build_dataclass(DatasetSpec, {"name": "shapes", "resolution": resolution})
    except ConfigError as err:
        raise ConfigError(field, resolution, err.expected) from None
    errors = []
    for arch in ARCHITECTURES.names():
        try:
            parse_trial({"architecture": {"name": arch}, "dataset": {"name": "shapes", "resolution": resolution}})
            return
        except ConfigError as err:
            errors.append(err.expected)
    raise ConfigError(field, resolution, "a resolution some architecture can train at; " + errors[0])


def build_dataset(name: str, resolution: Optional[int] = None) -> Tuple[Path, ImageSet]:
    """Build registered dataset ``name`` into the cache (overwrites atomically)."""
    src = source(name)
    resolution = resolution or src.default_resolution
    check_resolution(resolution)
    image_set = src.build(resolution)
    image_set.name = name
    path = write_hdf5(dataset_path(name, resolution), image_set)
    return path, image_set


def import_folder(folder: Path, name: str, resolution: int, mask: Optional[str] = None,
                  licence: str = "unknown (imported by the user)",
                  force: bool = False) -> Tuple[Path, ImageSet, List[str]]:
    """Convert every image under ``folder`` (recursively, sorted) into dataset ``name``.

    An existing dataset of that name is replaced only with ``force``: at the same
    resolution, or at another one imported from a different folder (a name must mean
    one set of images; trials started on the old one refuse to resume on the new)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("FOLDER", str(folder), "an existing folder of images")
    if not valid_name(name):
        raise ConfigError("--name", name, NAME_RULE)
    if name in DATASETS:
        raise ConfigError("--name", name, f"a name that is not a built-in dataset ({', '.join(DATASETS.names())})")
    check_resolution(resolution)
    if mask not in (None, "alpha"):
        raise ConfigError("--mask", mask, "alpha (the 4th channel is the image's alpha) or nothing")
    if not force:
        _check_not_taken(name, resolution, folder)
    files = image_files(folder)
    images, kept, skipped = convert_files(files, resolution)
    if len(kept) == 0:
        raise ConfigError("FOLDER", str(folder), f"a folder with at least one readable image ({len(skipped)} unreadable)")
    if mask is None:
        images = images[:, :3]
    info = {"description": f"imported from {folder}", "licence": licence, "source": str(folder.resolve()),
            "purpose": "user dataset", "build": f"{RECIPE}; composited on white"
            + ("; mask = alpha" if mask else ""), "files": len(files), "skipped": len(skipped),
            "channels": int(images.shape[1])}
    image_set = ImageSet(images, name, info)
    path = write_hdf5(dataset_path(name, resolution), image_set)
    return path, image_set, skipped


def _check_not_taken(name: str, resolution: int, folder: Path) -> None:
    existing = built_resolutions(name)
    if resolution in existing:
        raise ConfigError("--name", name, f"a dataset name not imported yet ({dataset_path(name, resolution)} exists; "
                          "--force replaces it, and trials started on the old images then refuse to resume)")
    for res in existing:
        try:
            other = read_card(dataset_path(name, res)).get("source")
        except OSError:
            other = None
        if other != str(folder.resolve()):
            raise ConfigError("--name", name, f"a dataset name not taken by other images ({name} at {res} px was "
                              f"imported from {other}; --force imports this folder under the same name anyway)")


def list_datasets() -> List[Dict[str, Any]]:
    rows = []
    built = built_datasets()
    for name in DATASETS.names():
        src_cls = DATASETS.get(name).obj
        card = dict(src_cls.card)
        res = built.get(name, [])
        row = {"name": name, "built": bool(res) or src_cls.procedural, "resolutions": res,
               "licence": card.get("licence", ""), "source": card.get("source", ""),
               "purpose": card.get("purpose", ""), "count": None}
        if res:
            row["count"] = read_card(dataset_path(name, res[-1])).get("count")
        elif src_cls.procedural:
            row["resolutions"] = "any (procedural)"
        rows.append(row)
    for name, res in built.items():
        if name in DATASETS:
            continue
        card = read_card(dataset_path(name, res[-1]))
        rows.append({"name": name, "built": True, "resolutions": res, "licence": card.get("licence", ""),
                     "source": card.get("source", ""), "purpose": card.get("purpose", "imported"),
                     "count": card.get("count")})
    return rows


def load_built(name: str, resolution: Optional[int] = None) -> ImageSet:
    if name.endswith((".h5", ".hdf5")):
        return read_hdf5(name, "NAME")
    if name in DATASETS and DATASETS.get(name).obj.procedural:
        src = source(name)
        return src.build(resolution or src.default_resolution)
    res = built_resolutions(name)
    if not res:
        raise ConfigError("NAME", name, f"a built dataset (run `ganbench data build {name}`)")
    if resolution is None:
        resolution = res[-1]
    if resolution not in res:
        raise ConfigError("--resolution", resolution, f"a built resolution of {name}: {', '.join(map(str, res))}")
    return read_hdf5(str(dataset_path(name, resolution)), "NAME")


def contact_sheet(image_set: ImageSet, out: Path, count: int = 64, columns: int = 16) -> Path:
    """A PNG grid of the first ``count`` images; 4-channel sets alternate RGB and mask rows."""
    from PIL import Image

    images = image_set.images[:count]
    n, c, h, w = images.shape
    rows = (n + columns - 1) // columns
    band = 2 if c == 4 else 1
    sheet = np.full((rows * band * (h + 1) + 1, columns * (w + 1) + 1, 3), 128, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, columns)
        y, x = 1 + r * band * (h + 1), 1 + col * (w + 1)
        sheet[y:y + h, x:x + w] = images[i, :3].transpose(1, 2, 0)
        if c == 4:
            sheet[y + h + 1:y + 2 * h + 1, x:x + w] = images[i, 3][..., None]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out)
    return out
