"""Image conversion shared by every dataset builder: decode safely, crop, downsample,
composite. The recipe is recorded on each dataset's card (``build`` attribute)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import numpy as np
from PIL import Image

# Area (box) filtering for downsampling: every source pixel contributes by its overlap
# (cv2's INTER_AREA, as seed D used); Pillow premultiplies alpha for RGBA resizes, so
# transparent pixels do not bleed colour into edges.
RESAMPLE = Image.Resampling.BOX
UPSAMPLE = Image.Resampling.BICUBIC
RECIPE = "centre square crop; Pillow box (area) resampling, bicubic when upsampling; alpha premultiplied"

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def open_rgba(path: Path) -> Optional[Image.Image]:
    """The image as RGBA, or None when it is unreadable, corrupt or truncated."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # force a full decode: truncated files fail here
                return img.convert("RGBA")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None


def centre_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def resize(img: Image.Image, resolution: int) -> Image.Image:
    if img.size == (resolution, resolution):
        return img
    method = RESAMPLE if img.size[0] >= resolution else UPSAMPLE
    return img.resize((resolution, resolution), method)


def rgba_to_array(img: Image.Image, background: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 4 x H x W: RGB composited over ``background`` (white if None), then alpha."""
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3:4]
    bg = np.ones_like(rgba[..., :3]) if background is None else background.astype(np.float32) / 255.0
    rgb = rgba[..., :3] * alpha + bg * (1.0 - alpha)
    out = np.concatenate([rgb, alpha], axis=-1)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def convert(img: Image.Image, resolution: int) -> np.ndarray:
    """Centre-crop, resize and composite on white: uint8 4 x R x R."""
    return rgba_to_array(resize(centre_square(img), resolution))


def image_files(folder: Path) -> List[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def convert_files(files: Iterable[Path], resolution: int) -> Tuple[np.ndarray, List[str], List[str]]:
    """(images N x 4 x R x R, kept file names, skipped file names)."""
    arrays, kept, skipped = [], [], []
    for path in files:
        img = open_rgba(path)
        if img is None:
            skipped.append(str(path))
            continue
        arrays.append(convert(img, resolution))
        kept.append(str(path))
    images = np.stack(arrays) if arrays else np.zeros((0, 4, resolution, resolution), np.uint8)
    return images, kept, skipped
