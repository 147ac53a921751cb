"""``objects-masked`` (seed study D at small scale): cut-out objects on real photos, RGB + mask.

Objects are the stamps with transparency of Debian's ``tuxpaint-stamps-default``
(photographs and drawings of animals, food, vehicles, ...; GPL-2). Each is cropped to
its alpha's bounding box, scaled to 55-90 % of the frame, placed at a random position
on a random square crop of one of scikit-image's bundled photographs (astronaut,
coffee, chelsea, rocket, ...), so the mask channel (the object's alpha) carries
information the RGB does not make trivial. Crops whose object covers < 15 % of the
frame are dropped, as seed D did for COCO. Deterministic (seed 0).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from harness.data import DatasetSource, ImageSet
from harness.data.fetch import DataSourceError, debian_package, debian_version
from harness.data.imageops import RESAMPLE, image_files, open_rgba, rgba_to_array
from harness.registry import DATASETS

BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")
MIN_COVERAGE = 0.15


def _backgrounds():
    try:
        from skimage import data
    except ImportError:
        raise DataSourceError("objects-masked needs scikit-image for its background photos") from None
    return [Image.fromarray(getattr(data, name)()).convert("RGB") for name in BACKGROUNDS]


@DATASETS.register("objects-masked")
class ObjectsMasked(DatasetSource):
    default_resolution = 64
    card = {
        "description": "tuxpaint stamp cut-outs composited on crops of real photographs; mask = the object",
        "licence": "stamps GPL-2 (Tux Paint, Debian tuxpaint-stamps-default); photos from scikit-image (public domain/CC0/BSD)",
        "source": "Debian tuxpaint-stamps-default + PyPI scikit-image",
        "purpose": "seed D: does a 4th (mask) channel help an unconditional GAN learn object shape?",
        "channels": 4,
    }

    def build(self, resolution: int) -> ImageSet:
        root = debian_package("tuxpaint-stamps-default", "objects-masked")
        stamps = image_files(root / "usr" / "share" / "tuxpaint" / "stamps")
        stamps = [p for p in stamps if p.suffix.lower() == ".png"]
        backgrounds = _backgrounds()
        rng = np.random.default_rng(0)
        arrays, skipped, low_coverage = [], 0, 0
        for path in stamps:
            img = open_rgba(path)
            if img is None:
                skipped += 1
                continue
            alpha = np.asarray(img)[..., 3]
            if alpha.min() > 250 or alpha.max() < 5:  # no cut-out: fully opaque or empty
                skipped += 1
                continue
            obj = img.crop(img.getchannel("A").getbbox())
            scale = rng.uniform(0.55, 0.9) * resolution / max(obj.size)
            size = (max(1, round(obj.size[0] * scale)), max(1, round(obj.size[1] * scale)))
            obj = obj.resize(size, RESAMPLE)
            photo = backgrounds[rng.integers(len(backgrounds))]
            side = int(min(photo.size) * rng.uniform(0.3, 1.0))
            left = rng.integers(0, photo.size[0] - side + 1)
            top = rng.integers(0, photo.size[1] - side + 1)
            bg = photo.crop((left, top, left + side, top + side)).resize((resolution, resolution), RESAMPLE)
            canvas = Image.new("RGBA", (resolution, resolution), (0, 0, 0, 0))
            x = rng.integers(0, resolution - size[0] + 1)
            y = rng.integers(0, resolution - size[1] + 1)
            canvas.paste(obj, (int(x), int(y)))
            array = rgba_to_array(canvas, background=np.asarray(bg))
            if (array[3] > 127).mean() < MIN_COVERAGE:
                low_coverage += 1
                continue
            arrays.append(array)
        info = {**self.card, "version": debian_version("tuxpaint-stamps-default"), "stamps": len(stamps),
                "skipped_no_alpha_or_unreadable": skipped, "dropped_low_coverage": low_coverage,
                "build": f"object scaled 55-90% (box), random position, photo crop 30-100% (box); "
                         f"coverage >= {MIN_COVERAGE}; seed 0"}
        return ImageSet(np.stack(arrays), "objects-masked", info)
