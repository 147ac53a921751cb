"""Table kinds, registered by name: a new kind of table is one decorated function.

    @table_kind("mine", "what it shows", order=50)
    def mine(results: StudyResults, options: AnalysisOptions) -> Table: ...

``ganbench table --kind`` offers every registered name, and the HTML report shows each
kind whose ``in_report(results, phase)`` holds, in ``order``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

from harness.errors import ConfigError


@dataclass(frozen=True)
class TableKind:
    name: str
    build: Callable  # (StudyResults, AnalysisOptions) -> Table
    help: str
    order: int
    in_report: Callable  # (StudyResults, phase) -> bool


TABLES: Dict[str, TableKind] = {}


def table_kind(name: str, help: str, order: int = 100, in_report: Callable = lambda results, phase: True):
    def register(build: Callable) -> Callable:
        if name in TABLES:
            raise ValueError(f"table kind {name!r} registered twice")
        TABLES[name] = TableKind(name, build, help, order, in_report)
        return build
    return register


def table_kinds() -> List[TableKind]:
    """Every registered kind, in report order."""
    import harness.analysis  # noqa: F401 (registers the built-in kinds)

    return sorted(TABLES.values(), key=lambda k: (k.order, k.name))


def build_table(kind: str, results, options):
    names = [k.name for k in table_kinds()]
    if kind not in TABLES:
        raise ConfigError("--kind", kind, "one of " + ", ".join(names))
    return TABLES[kind].build(results, options)
