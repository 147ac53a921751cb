"""``lfw-faces``: 100 real face photos from scikit-image's bundled LFW subset.

``skimage/data/lfw_subset.npy`` holds 200 grayscale 25 x 25 crops from Labeled Faces in
the Wild; the first 100 are faces (the rest are non-face patches). Native size is 25 px:
builds at other sizes are resampled (bicubic up, area down) and say so on the card.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from harness.data import DatasetSource, ImageSet
from harness.data.fetch import DataSourceError
from harness.data.imageops import resize
from harness.registry import DATASETS


@DATASETS.register("lfw-faces")
class LFWFaces(DatasetSource):
    default_resolution = 32
    card = {
        "description": "100 grayscale face photos (25 x 25) from Labeled Faces in the Wild",
        "licence": "LFW: research use, no licence stated by the authors; redistributed in scikit-image (BSD-3)",
        "source": "PyPI scikit-image (skimage/data/lfw_subset.npy)",
        "purpose": "a few-shot set of real photographs (low resolution)",
        "channels": 3,
    }

    def build(self, resolution: int) -> ImageSet:
        try:
            import skimage
            from skimage import data
        except ImportError:
            raise DataSourceError("lfw-faces needs scikit-image: pip install scikit-image") from None
        faces = data.lfw_subset()[:100]
        arrays = []
        for face in faces:
            img = Image.fromarray(np.clip(np.round(face * 255), 0, 255).astype(np.uint8), "L")
            gray = np.asarray(resize(img, resolution), dtype=np.uint8)
            arrays.append(np.repeat(gray[None], 3, axis=0))
        info = {**self.card, "version": skimage.__version__, "native_resolution": 25,
                "build": "grayscale repeated to RGB; bicubic when upsampling from 25 px, box when downsampling"}
        return ImageSet(np.stack(arrays), "lfw-faces", info)
