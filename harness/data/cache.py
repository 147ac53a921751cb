"""Where built datasets, downloads and the model zoo live: never in git.

``$GANBENCH_CACHE`` when set, else ``$XDG_CACHE_HOME/ganbench``, else ``~/.cache/ganbench``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def cache_dir() -> Path:
    root = os.environ.get("GANBENCH_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ganbench"


def datasets_dir() -> Path:
    return cache_dir() / "datasets"


def downloads_dir() -> Path:
    return cache_dir() / "downloads"


NAME_RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit"


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def dataset_path(name: str, resolution: int) -> Path:
    """The built HDF5 file of dataset ``name`` at ``resolution``."""
    return datasets_dir() / name / f"{name}-{resolution}.hdf5"


def built_resolutions(name: str) -> List[int]:
    folder = datasets_dir() / name
    found = []
    for p in folder.glob(f"{name}-*.hdf5") if folder.is_dir() else []:
        tail = p.stem[len(name) + 1:]
        if tail.isdigit():
            found.append(int(tail))
    return sorted(found)


def built_datasets() -> Dict[str, List[int]]:
    """Every dataset with at least one built file: name -> resolutions."""
    root = datasets_dir()
    out = {}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir():
            res = built_resolutions(folder.name)
            if res:
                out[folder.name] = res
    return out
