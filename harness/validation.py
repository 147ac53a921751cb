"""Strict construction of (nested) dataclasses from plain YAML/JSON data.

Every field's annotation is enforced; unknown keys are errors; numeric bounds and
choices come from ``dataclasses.field(metadata=...)``:

* ``min`` / ``max``: inclusive bounds for numbers (``min_exclusive`` for strict);

and everywhere, whatever the metadata: a number is finite (NaN and infinities are
refused: ``nan <= 0`` is False, so a bound alone would let NaN through) and an integer
fits in 64 bits (``INT_LIMIT``), so no value overflows later inside torch or numpy.
* ``choices``: a collection, or a zero-argument callable returning one (used for
  registry names, resolved lazily so variants can register late).

Errors are :class:`~harness.errors.ConfigError` carrying the dotted path.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Dict, Literal, Union, get_args, get_origin, get_type_hints

from harness.errors import ConfigError

_NoneType = type(None)

INT_LIMIT = 2 ** 63 - 1


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Union:
        args = [a for a in get_args(tp) if a is not _NoneType]
        inner = " or ".join(_type_name(a) for a in args)
        return f"{inner} or null" if len(args) < len(get_args(tp)) else inner
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, typing.List):
        return f"a list of {_type_name(get_args(tp)[0])}" if get_args(tp) else "a list"
    if origin in (tuple, typing.Tuple):
        return "a list of " + ", ".join(_type_name(a) for a in get_args(tp))
    if origin in (dict, typing.Dict):
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp is Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


def coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (converted where lossless)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union:
        args = get_args(tp)
        if value is None:
            if _NoneType in args:
                return None
            raise ConfigError(path, value, _type_name(tp))
        errors = []
        for arg in args:
            if arg is _NoneType:
                continue
            try:
                return coerce(arg, value, path)
            except ConfigError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(path, value, _type_name(tp))
    if origin is Literal:
        if value in get_args(tp) and type(value) in {type(a) for a in get_args(tp)}:
            return value
        raise ConfigError(path, value, _type_name(tp))
    if origin in (list, typing.List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, value, _type_name(tp))
        (item_tp,) = get_args(tp) or (Any,)
        return [coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin in (tuple, typing.Tuple):
        args = get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(path, value, _type_name(tp))
        return tuple(coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, typing.Dict):
        if not isinstance(value, dict):
            raise ConfigError(path, value, _type_name(tp))
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {coerce(key_tp, k, path): coerce(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return build_dataclass(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, value, "true or false")
    if tp is int:
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        if number is None:
            raise ConfigError(path, value, "an integer")
        if abs(number) > INT_LIMIT:
            raise ConfigError(path, value, f"an integer within ±{INT_LIMIT} (2^63 - 1)")
        return number
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if abs(value) <= 1e308 else math.inf
        # YAML 1.1 reads "2e-4" (no dot) as a string; accept it as the number it is.
        elif isinstance(value, str) and len(value) <= 64:
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(path, value, "a number")
        if not math.isfinite(number):
            raise ConfigError(path, value, "a finite number (not NaN or infinite)")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, value, "a string")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(path, value, _type_name(tp))
    return value


def _check_metadata(meta: Dict[str, Any], value: Any, path: str) -> None:
    if value is None:
        return
    if "choices" in meta:
        choices = meta["choices"]
        choices = list(choices() if callable(choices) else choices)
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if item not in choices:
                item_path = f"{path}[{i}]" if isinstance(value, list) else path
                raise ConfigError(item_path, item, "one of " + ", ".join(map(str, choices)))
    if "min" in meta and value < meta["min"]:
        raise ConfigError(path, value, f"a value >= {meta['min']}")
    if "min_exclusive" in meta and value <= meta["min_exclusive"]:
        raise ConfigError(path, value, f"a value > {meta['min_exclusive']}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(path, value, f"a value <= {meta['max']}")


def build_dataclass(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from mapping ``data``, strictly."""
    label = path or cls.__name__
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(label, data, _type_name(cls))
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{path}.{key}" if path else str(key),
            data[key],
            "no such key; allowed keys: " + ", ".join(fields),
        )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            value = coerce(hints[name], data[name], sub)
            _check_metadata(dict(f.metadata), value, sub)
            kwargs[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(sub, None, "a value (this key is required)")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(path)
    return obj


def to_plain(obj: Any) -> Any:
    """Dataclasses/tuples -> plain dicts/lists for YAML and JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj
