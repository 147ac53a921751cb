"""Errors that the harness raises on purpose."""
from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """An invalid configuration value, named by its dotted path.

    The message always reads ``<path>: got <value>; expected <allowed>`` so a user can
    find the offending line of a YAML file without reading a traceback.
    """

    def __init__(self, path: str, value: Any, expected: str):
        self.path = path
        self.value = value
        self.expected = expected
        super().__init__(f"{path}: got {value!r}; expected {expected}")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or fails its checksum."""


class WeightsError(RuntimeError):
    """Missing or wrong weights for a feature extractor."""


class DataSourceError(RuntimeError):
    """A dataset source that cannot be fetched or converted here."""


class UntestedVersionError(RuntimeError):
    """A Ray or Optuna release the Ray adapter was not tested with (harness/tune_adapter.py)."""
