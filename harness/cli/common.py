"""What every command group shares: reading a YAML with ``--set`` overrides, loading a
trial config or a planned study, writing output. Imports neither torch nor Ray."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness import safe_yaml
from harness.errors import ConfigError


def overrides(pairs: Optional[List[str]]) -> Dict[str, Any]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError("--set", pair, "KEY=VALUE with a dotted KEY, e.g. optimization.iterations=100")
        key, value = pair.split("=", 1)
        out[key] = safe_yaml.loads(value, f"--set {key}")
    return out


def read_mapping(file: str, sets: Optional[List[str]], what: str) -> Dict[str, Any]:
    """A YAML mapping with ``--set`` overrides applied."""
    from harness.spec import load_yaml, set_dotted

    data = load_yaml(file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("file", file, f"a YAML mapping of {what}")
    for key, value in overrides(sets).items():
        set_dotted(data, key, value)
    return data


def load_trial(args: argparse.Namespace):
    """The TrialSpec of ``args.config`` with its ``--set`` overrides."""
    from harness.spec import parse_trial

    return parse_trial(read_mapping(args.config, getattr(args, "set", None), "trial settings"))


def load_plan(file: str, sets: Optional[List[str]], preset: Optional[str] = None,
              max_trials: Optional[int] = None):
    """The study of ``file`` (preset and ``--set`` applied), planned once."""
    from harness import api

    return api.plan(file, api.StudyOptions(preset=preset, set=sets, max_trials=max_trials))


def add_max_trials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-trials", type=int, default=None, metavar="N",
                   help="refuse a study planning more than N trials (default 1000)")


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="trial config YAML")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a dotted config key (repeatable), e.g. optimization.iterations=100")


def open_study(location: str):
    """The StudyRecord of a study folder or URI (``s3://bucket/prefix/<study>``); on
    object storage its local staging copy is brought up to date first."""
    from harness.store import StudyRecord

    record = StudyRecord.open(location)
    record.pull()
    return record


def trial_record(out: str):
    """The TrialRecord of ``--out``: a folder, or object storage (``s3://bucket/prefix/trial``,
    staged locally and published; refused up front when unusable)."""
    from harness.store import TrialRecord

    record = TrialRecord.open(out)
    if record.remote is not None:
        record.remote.check("--out")
    return record


def write_or_print(text: str, out: Optional[str]) -> None:
    if out:
        from harness.files import atomic_write_text

        atomic_write_text(Path(out), text)
        print(f"wrote {out}")
    else:
        sys.stdout.write(text)
