"""The metric glossary of a study's report: what each metric measures, its scale, which
direction is better and the fields of its protocol — read from what the trials recorded
with their values (summary columns ``info.<metric>``, ``protocol.<metric>``,
``direction.<value>``), so analysis needs neither torch nor the metric registry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from harness.analysis.results import StudyResults


@dataclass(frozen=True)
class Entry:
    metric: str                 # the registered metric (eval.metrics)
    values: List[str]           # the value keys it reports (kid_effnet, kid_effnet_std)
    description: str
    scale: str
    direction: str              # min | max
    protocol: Dict[str, Any]    # one trial's protocol (per-trial seed dropped)


def _first_json(frame, column: str) -> Optional[Dict[str, Any]]:
    if column not in frame.columns:
        return None
    for value in frame[column]:
        if isinstance(value, str) and value:
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                continue
    return None


def glossary(res: StudyResults) -> List[Entry]:
    """One entry per metric the study's trials recorded a description for."""
    frame = res.frame
    out = []
    for column in [c for c in frame.columns if c.startswith("info.")]:
        metric = column[len("info."):]
        info = _first_json(frame, column) or {}
        protocol = {k: v for k, v in (_first_json(frame, f"protocol.{metric}") or {}).items() if k != "seed"}
        values = [str(v) for v in info.get("values") or [metric]]
        directions = info.get("directions") or {}  # per value key (newer rows)
        if len(set(directions.values())) > 1:
            direction = ", ".join(f"{k}: {'max' if up else 'min'}" for k, up in directions.items())
        else:
            direction = "max" if info.get("higher_is_better") else "min"
        out.append(Entry(metric, values, str(info.get("description") or "(no description recorded)"),
                         str(info.get("scale") or ""), direction, protocol))
    return out


def value_scale(res: StudyResults, value: str) -> str:
    """The recorded scale of a metric value key ('×10³' for swd), '' when unknown."""
    for entry in glossary(res):
        if value in entry.values:
            return entry.scale
    return ""
