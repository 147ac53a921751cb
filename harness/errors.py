"""Errors that the harness raises on purpose."""
from __future__ import annotations

import reprlib
from typing import Any

# Values are printed abbreviated: an error about a huge (or alias-expanded) value costs a
# line, never its whole text.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 200, 200, 40
MAX_SHOWN = 400


def shorten(value: Any) -> str:
    """A repr of ``value`` of at most ``MAX_SHOWN`` characters, in bounded time."""
    text = _REPR.repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


class ConfigError(ValueError):
    """An invalid configuration value, named by its dotted path.

    The message always reads ``<path>: got <value>; expected <allowed>`` so a user can
    find the offending line of a YAML file without reading a traceback; a long value is
    abbreviated (:func:`shorten`).
    """

    def __init__(self, path: str, value: Any, expected: str):
        self.path = path
        self.value = value
        self.expected = expected
        super().__init__(f"{path}: got {shorten(value)}; expected {expected}")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or fails its checksum."""


class WeightsError(RuntimeError):
    """Missing or wrong weights for a feature extractor."""


class DataSourceError(RuntimeError):
    """A dataset source that cannot be fetched or converted here."""


class UntestedVersionError(RuntimeError):
    """A Ray or Optuna release the Ray adapter was not tested with (harness/tune_adapter.py)."""
