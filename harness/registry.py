"""Name -> implementation registries, one per kind of variant.

A variant is one module that registers one class under one name::

    @ARCHITECTURES.register("dcgan", params=DCGANParams)
    class DCGAN: ...

``params`` is a dataclass describing the variant's keyword arguments; the registry
validates a config's ``kwargs`` mapping against it (unknown keys and wrong types are
errors that name the dotted path), so every variant gets the same strict checking
without writing any of it.

The registries are filled by importing the ``variants`` package, which imports each
of its modules; :func:`load_builtin_variants` does that once, lazily, so that
``harness`` itself never has to know which variants exist.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional

from harness.errors import ConfigError
from harness.validation import build_dataclass


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    params: Optional[type]
    module: str


class Registry:
    """A mapping from names to variant implementations of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Entry] = {}

    def register(self, name: str, params: Optional[type] = None) -> Callable[[Any], Any]:
        if params is not None and not dataclasses.is_dataclass(params):
            raise TypeError(f"{self.kind} {name!r}: params must be a dataclass type")

        def decorate(obj: Any) -> Any:
            existing = self._entries.get(name)
            if existing is not None and existing.module != obj.__module__:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {existing.module}"
                )
            self._entries[name] = Entry(name, obj, params, obj.__module__)
            return obj

        return decorate

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list:
        load_builtin_variants()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        load_builtin_variants()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, path: str = "") -> Entry:
        load_builtin_variants()
        if name not in self._entries:
            raise ConfigError(
                path or self.kind, name, f"a registered {self.kind}: {', '.join(self.names())}"
            )
        return self._entries[name]

    def validate_kwargs(self, name: str, kwargs: Any, path: str) -> Any:
        """Return the variant's params dataclass built from ``kwargs`` (validated)."""
        entry = self.get(name)
        if entry.params is None:
            if kwargs:
                raise ConfigError(path, kwargs, f"no keyword arguments ({self.kind} {name!r} takes none)")
            return None
        return build_dataclass(entry.params, kwargs or {}, path)

    def build(self, name: str, kwargs: Any = None, path: str = "", **context: Any) -> Any:
        """Instantiate variant ``name`` with validated params plus runtime ``context``."""
        entry = self.get(name, path)
        params = self.validate_kwargs(name, kwargs, path or f"{self.kind}.kwargs")
        if params is None:
            return entry.obj(**context)
        return entry.obj(params, **context)


ARCHITECTURES = Registry("architecture")
LOSSES = Registry("loss")
AUGMENTS = Registry("augment")
REGULARIZERS = Registry("regularizer")
TRANSFERS = Registry("transfer")
METRICS = Registry("metric")
DATASETS = Registry("dataset")

_loaded = False


def load_builtin_variants() -> None:
    """Import every module of the ``variants`` package (and built-in datasets/metrics)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package_name in ("variants", "harness.metrics", "harness.data"):
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            importlib.import_module(info.name)
