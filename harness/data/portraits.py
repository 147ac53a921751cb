"""``portraits`` (seed study B at small scale): painted character portraits from
Battle for Wesnoth (Debian ``wesnoth-1.16-data``, ``data/core/images/portraits/``, GPL-2+).

Busts painted on transparent backgrounds, composited on white; alpha is the mask.
"""
from __future__ import annotations

from harness.data import DatasetSource, ImageSet
from harness.data.fetch import DataSourceError, debian_package, debian_version
from harness.data.imageops import RECIPE, convert_files, image_files
from harness.registry import DATASETS


@DATASETS.register("portraits")
class Portraits(DatasetSource):
    default_resolution = 64
    card = {
        "description": "painted character portraits (busts) from Battle for Wesnoth 1.16",
        "licence": "GPL-2+ (Battle for Wesnoth artwork)",
        "source": "Debian wesnoth-1.16-data (data/core/images/portraits)",
        "purpose": "seed B at small scale: DCGAN on paintings",
        "channels": 4,
    }

    def build(self, resolution: int) -> ImageSet:
        root = debian_package("wesnoth-1.16-data", "portraits")
        folder = root / "usr" / "share" / "games" / "wesnoth" / "1.16" / "data" / "core" / "images" / "portraits"
        files = image_files(folder)
        if not files:
            raise DataSourceError(f"portraits: no images under {folder}")
        images, kept, skipped = convert_files(files, resolution)
        info = {**self.card, "version": debian_version("wesnoth-1.16-data"), "skipped": len(skipped),
                "build": f"{RECIPE}; composited on white; mask = alpha"}
        return ImageSet(images, "portraits", info)
