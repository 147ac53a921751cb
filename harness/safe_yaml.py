"""Reading YAML that a user (or an attacker) wrote: the one place ganbench parses YAML.

``yaml.safe_load`` already refuses to build arbitrary objects; this adds the bounds it
lacks, each refused with a :class:`~harness.errors.ConfigError` before any value is used:

* the file's size (``MAX_BYTES``): a trial or study file is a few kilobytes;
* text that is not UTF-8;
* alias expansion: anchors and aliases stay allowed (``<<: *defaults`` is common), but
  the document, with every alias expanded, may hold at most ``MAX_NODES`` nodes and nest
  at most ``MAX_DEPTH`` levels — a "billion laughs" file of a few hundred bytes is refused
  while it is still a small graph, before anything walks, copies or prints it;
* duplicate keys in one mapping (YAML says they are an error; PyYAML keeps the last
  silently), named with both lines. Keys a merge (``<<``) brings in may be overridden.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from harness.errors import ConfigError

MAX_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64

_MERGE = "tag:yaml.org,2002:merge"


class _BoundedLoader(yaml.SafeLoader):
    source = "file"

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node, self.source)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines: Dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = lines.get(key)
                except TypeError:  # an unhashable key: the constructor below names it
                    continue
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise ConfigError(self.source, key, f"each key once per mapping (it appears on lines {first} "
                                                        f"and {line})")
                lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node, source: str) -> None:
    """Refuse a node graph whose expansion (aliases followed) exceeds the bounds; linear in
    the number of distinct nodes, whatever the expansion."""
    sizes: Dict[int, int] = {}

    def size(node: yaml.Node, depth: int, open_: set) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if depth > MAX_DEPTH:
            raise ConfigError(source, f"nesting deeper than {MAX_DEPTH} levels", "a YAML document nested at most "
                              f"{MAX_DEPTH} levels")
        if key in open_:
            raise ConfigError(source, "a recursive alias", "a YAML document without recursive aliases")
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            open_.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            for child in children:
                total += size(child, depth + 1, open_)
                if total > MAX_NODES:
                    raise ConfigError(source, f"more than {MAX_NODES:,} values once its aliases are expanded",
                                      f"a YAML document of at most {MAX_NODES:,} values (anchors and aliases "
                                      "included)")
            open_.discard(key)
        sizes[key] = total
        return total

    size(root, 0, set())


def loads(text: str, source: str = "file") -> Any:
    """Parse YAML ``text`` within the bounds; ``source`` names it in errors."""
    if len(text) > MAX_BYTES:
        raise ConfigError(source, f"{len(text):,} characters", f"a YAML document of at most {MAX_BYTES:,} bytes")
    loader = _BoundedLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise ConfigError(source, _short(err), "valid YAML") from None
    except RecursionError:
        raise ConfigError(source, "nesting too deep to parse", f"a YAML document nested at most {MAX_DEPTH} "
                          "levels") from None
    finally:
        loader.dispose()


def load_file(file: str, what: str = "an existing YAML file", field: Optional[str] = None) -> Any:
    """Parse YAML file ``file`` within the bounds; errors name ``field`` (default: the file)."""
    label = field or str(file)
    path = Path(file)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(field or "file", str(file), what) from None
    except IsADirectoryError:
        raise ConfigError(field or "file", str(file), f"{what}, not a directory") from None
    except OSError as err:
        raise ConfigError(field or "file", str(file), f"a readable file ({err.strerror})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(label, f"more than {MAX_BYTES:,} bytes", f"a YAML file of at most {MAX_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(label, f"byte {err.start} is not UTF-8", "a YAML file in UTF-8") from None
    return loads(text, label)


def _short(err: yaml.YAMLError) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."
