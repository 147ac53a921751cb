"""The options of a table or a report — one dataclass each, shared by the CLI
(``ganbench table`` / ``ganbench report`` build them from their flags) and the Python API
(``comparison_table(res, ...)``, ``write_report(dir, options=ReportOptions(...))``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, List, Optional

from harness.analysis.stats import TESTS
from harness.errors import ConfigError

PHASES = ("grid", "search", "finalist")
CIS = ("t", "bootstrap")
PLOTLYJS = ("inline", "cdn")


@dataclass
class AnalysisOptions:
    # metric key (default: the search metric, else the first measured), e.g. fid, swd
    metric: Optional[str] = None
    # which trials (default: finalists if any, else the grid, else the search)
    phase: Optional[str] = None
    # group by summary columns instead of the study's cells, e.g. augment.policy
    by: Optional[List[str]] = None
    # the configuration the pairwise table compares against (default: the study's first)
    baseline: Optional[str] = None
    # the significance test whose p < 0.05 is starred
    test: str = "welch"
    # confidence interval over seeds: Student t or percentile bootstrap
    ci: str = "t"
    level: float = 0.95

    def __post_init__(self) -> None:
        for name, allowed in (("phase", PHASES), ("test", TESTS), ("ci", CIS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ConfigError(f"--{name}", value, "one of " + ", ".join(allowed))
        if not 0.0 < float(self.level) < 1.0:
            raise ConfigError("--level", self.level, "a confidence level between 0 and 1, e.g. 0.95")

    @classmethod
    def from_namespace(cls, args: Any) -> "AnalysisOptions":
        """The options an argparse namespace holds (flags named like the fields)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


@dataclass
class ReportOptions(AnalysisOptions):
    # inline plotly.js (offline, ~5 MB more) or load it from the plotly CDN
    plotlyjs: str = "inline"
    # also write every figure as a PNG beside the report (through kaleido)
    png: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.plotlyjs not in PLOTLYJS:
            raise ConfigError("--plotlyjs", self.plotlyjs, "one of " + ", ".join(PLOTLYJS))
