"""Generated reference pages: every config field from the typed specs, every command from
the CLI's parser. ``python -m harness.reference`` rewrites ``docs/config-reference.md`` and
``docs/cli-reference.md``; ``tests/test_docs.py`` fails when the committed pages differ
from what the code says, so the docs cannot drift from the specs.

A field's description is the comment block right above it in its dataclass; types come
from the annotations, defaults from the dataclass, constraints from ``metadata`` (the same
``choices`` / ``min`` / ``max`` / ``min_exclusive`` the validator enforces).
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONFIG_PAGE = "config-reference.md"
CLI_PAGE = "cli-reference.md"
_FIELD = re.compile(r"^\s{4}(\w+)\s*:")


def field_comments(cls: type) -> Dict[str, str]:
    """The comment block above each field of dataclass ``cls`` (inherited fields too)."""
    out: Dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            lines = textwrap.dedent(inspect.getsource(klass)).splitlines()
        except (OSError, TypeError):
            continue
        block: List[str] = []
        for line in lines[1:]:
            stripped = line.strip()
            if stripped.startswith("#"):
                block.append(stripped.lstrip("#").strip())
                continue
            match = _FIELD.match(line)
            if match and block:
                out[match.group(1)] = " ".join(block)
            if stripped.startswith(("def ", "@")):
                break
            block = []
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return " | ".join(_type_name(a) for a in inner) + (" | null" if len(inner) < len(args) else "")
    if origin in (list, List):
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin in (dict, Dict):
        return f"map[{_type_name(args[0])}, {_type_name(args[1])}]" if args else "map"
    if origin in (tuple, Tuple):
        return "[" + ", ".join(_type_name(a) for a in args if a is not Ellipsis) + "]"
    if tp is Any:
        return "any"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "required"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{value!r}`" if not isinstance(value, str) else (f"`{value}`" if value else '`""`')


def _constraints(f: dataclasses.Field) -> str:
    meta, parts = f.metadata, []
    if "choices" in meta:
        choices = meta["choices"]
        choices = list(choices() if callable(choices) else choices)
        parts.append("one of " + ", ".join(f"`{c}`" for c in choices))
    if "min" in meta:
        parts.append(f"≥ {meta['min']}")
    if "min_exclusive" in meta:
        parts.append(f"> {meta['min_exclusive']}")
    if "max" in meta:
        parts.append(f"≤ {meta['max']}")
    return "; ".join(parts)


def _dataclass_of(tp: Any) -> Any:
    """The dataclass a field holds (directly, optionally, or as map values), if any."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def rows(cls: type, prefix: str = "") -> Iterator[Tuple[str, str, str, str, str]]:
    """(path, type, default, allowed, description) of every field of ``cls``, depth first."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name}"
        nested = _dataclass_of(tp)
        is_map = typing.get_origin(tp) in (dict, Dict)
        is_list = typing.get_origin(tp) in (list, List)
        section = nested is not None and not (is_map or is_list) and not comments.get(f.name)
        if not section:  # a plain section is described by its fields
            yield path, _type_name(tp), _default(f), _constraints(f), comments.get(f.name, "")
        if nested is not None and nested is not cls:
            sub = f"{path}.NAME." if is_map else (f"{path}[i]." if is_list else f"{path}.")
            yield from rows(nested, sub)


def _table(cls: type) -> str:
    out = ["| path | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
    for path, tp, default, allowed, text in rows(cls):
        cells = [f"`{path}`", tp.replace("|", "\\|"), default.replace("|", "\\|"), allowed.replace("|", "\\|"),
                 text.replace("|", "\\|")]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def config_reference() -> str:
    from harness.registry import load_builtin_variants
    from harness.spec import TrialSpec
    from harness.study.schema import StudySpec

    load_builtin_variants()
    return (
        "# Config reference\n\n"
        "Generated from the typed specs by `python -m harness.reference` — do not edit by hand\n"
        "(`tests/test_docs.py` fails when this page and the specs disagree). How the pieces fit:\n"
        "[trial-config.md](trial-config.md) and [study-file.md](study-file.md).\n\n"
        "## Trial config (`TrialSpec`, harness/spec.py)\n\n"
        "A trial YAML sets any of these paths; everything else keeps its default. Variant\n"
        "`kwargs` are checked by each variant's own parameters (`ganbench list` names them).\n\n"
        + _table(TrialSpec) +
        "\n## Study file (`StudySpec`, harness/study/schema.py)\n\n"
        "`base` is a trial config (mapping or file); `grid`/`variants`/`search` paths are\n"
        "dotted trial-config paths; `presets` and `set` are described in study-file.md.\n\n"
        + _table(StudySpec)
    )


def _commands(parser: argparse.ArgumentParser, prefix: str) -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


def cli_reference() -> str:
    from harness.cli import build_parser

    parts = ["# Command reference\n\n",
             "Generated from the CLI's parser by `python -m harness.reference` — do not edit by hand\n"
             "(`tests/test_docs.py` fails when it is stale). An overview with examples: [cli.md](cli.md).\n"]
    for name, sub in _commands(build_parser(), "ganbench"):
        text = sub.format_help()
        text = re.sub(r"^usage: .*?(?=\n\S|\Z)", lambda m: re.sub(r"\s+", " ", m.group(0)), text, flags=re.S)
        parts.append(f"\n## `{name}`\n\n```text\n{text.rstrip()}\n```\n")
    return "".join(parts)


def pages() -> Dict[str, str]:
    return {CONFIG_PAGE: config_reference(), CLI_PAGE: cli_reference()}


def main() -> int:
    import os

    os.environ.setdefault("COLUMNS", "100")  # argparse wraps help at the terminal width
    for name, text in pages().items():
        (DOCS / name).write_text(text)
        print(f"wrote {DOCS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
