"""Weights & Biases: one run per trial, grouped by study, online or offline.

The run id is made once and kept in the trial's record (``tracking.json``), so a resumed
trial continues the same run (``resume="allow"``); steps the run already holds are not
sent again (W&B refuses steps that go back). Offline runs live in the trial's folder
(``wandb/``) and upload later with ``wandb sync``.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.errors import ConfigError
from harness.tracking.base import Tracker, register

MODES = ("online", "offline", "disabled")
# W&B's project, entity and group names: no '/', '\', '#', '?', '%', ':'
_NAME = re.compile(r"^[^/\\#?%:\x00-\x1f]{1,128}$")


@dataclass
class WandbOptions:
    # The W&B project.
    project: str = "ganbench"
    # The team or user owning the project (null: the logged-in user's default).
    entity: Optional[str] = None
    # The run group; null: the study's name (a trial alone: no group).
    group: Optional[str] = None
    # online needs W&B credentials (wandb login or WANDB_API_KEY); offline writes the run
    # into the trial's folder for a later `wandb sync`; disabled logs nothing.
    mode: str = field(default="online", metadata={"choices": MODES})
    # Tags on every run.
    tags: List[str] = field(default_factory=list)
    # Send the sample grids.
    images: bool = True

    def validate(self, path: str) -> None:
        for key in ("project", "entity", "group"):
            value = getattr(self, key)
            if value is not None and not _NAME.match(value):
                raise ConfigError(f"{path}.{key}", value, "1 to 128 characters, none of / \\ # ? % :")
        for i, tag in enumerate(self.tags):
            if not 1 <= len(tag) <= 64:
                raise ConfigError(f"{path}.tags[{i}]", tag, "a tag of 1 to 64 characters")


@register("wandb", WandbOptions)
class WandbTracker(Tracker):
    package = "wandb"
    install = "wandb"

    def start(self) -> Dict[str, Any]:
        import wandb

        from harness.tracking.hub import flatten

        info, o = self.info, self.options
        run_id = self.state.get("run_id") or secrets.token_hex(4)
        self.run = wandb.init(
            project=o.project, entity=o.entity, group=o.group or info.study, job_type=info.phase,
            name=info.trial, id=run_id, resume="allow", mode=o.mode, dir=str(info.folder),
            config={**flatten(info.config), **{f"label.{k}": v for k, v in info.labels.items()}},
            tags=list(o.tags) or None, reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", disable_git=True, x_disable_stats=True))
        return {"run_id": run_id}

    def log(self, step: int, values: Dict[str, float]) -> None:
        self.run.log(dict(values), step=step)

    def text(self, step: int, values: Dict[str, str]) -> None:
        self.run.config.update(values, allow_val_change=True)

    def image(self, step: int, tag: str, path: Path) -> None:
        import wandb

        self.run.log({tag: wandb.Image(str(path))}, step=step)

    def finish(self, step: int, status: str, hparams: Dict[str, Any], results: Dict[str, float]) -> None:
        self.run.summary.update({**results, "status": status})
        self.run.finish(exit_code=0 if status in ("completed", "stopped") else 1)
        self.run = None

    def close(self) -> None:
        run = getattr(self, "run", None)
        if run is not None:
            run.finish()
            self.run = None

    def files(self) -> List[Path]:
        root = self.info.folder / "wandb"
        if not root.is_dir():
            return []
        # latest-run is W&B's link to the newest run folder: its files are listed once, there
        return sorted(p for p in root.rglob("*") if p.is_file() and "latest-run" not in p.relative_to(root).parts)
