"""TensorBoard: event files in the trial's folder (``tensorboard/``), on by default.

Scalars and sample grids at the trial's iteration as the step; metric protocols as text;
at the end the hyperparameters (the resolved config, flattened) with the final and best
metric values as an HParams session, so ``tensorboard --logdir RESULTS/<study>/trials``
compares the trials of a study in its HParams view. A resumed trial's writer purges the
steps after its checkpoint (TensorBoard's ``purge_step``), so the series readers see has
each step once and equals ``metrics.jsonl``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict

from harness.tracking.base import Tracker, register

FOLDER = "tensorboard"


@dataclass
class TensorBoardOptions:
    # Send the sample grids (the fixed-noise grid at every sample_every).
    images: bool = True
    # Seconds between flushes of the event file to disk.
    flush_s: int = field(default=10, metadata={"min": 1, "max": 3600})


@register("tensorboard", TensorBoardOptions)
class TensorBoardTracker(Tracker):
    package = "tensorboard"
    install = "tensorboard"
    rewrites_history = True

    def start(self) -> Dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.info.folder / FOLDER
        resumed = folder.is_dir() and any(folder.glob("events.out.tfevents.*"))
        # purge_step: events of steps >= it written by an earlier start are hidden by readers
        purge = self.info.resumed_at + 1 if resumed else None
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge, flush_secs=self.options.flush_s)
        return {"log_dir": FOLDER}

    def log(self, step: int, values: Dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def text(self, step: int, values: Dict[str, str]) -> None:
        for tag, value in values.items():
            self.writer.add_text(tag, value, step)

    def image(self, step: int, tag: str, path: Path) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
        self.writer.add_image(tag, array, step, dataformats="HWC")

    def finish(self, step: int, status: str, hparams: Dict[str, Any], results: Dict[str, float]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        values = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hparams.items()}
        values["status"] = status
        experiment, session_start, session_end = hparams_summary(values, results)
        for summary in (experiment, session_start, session_end):
            self.writer.file_writer.add_summary(summary)
        for tag, value in results.items():
            self.writer.add_scalar(tag, value, step)
        self.close()

    def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
            self.writer = None

    def files(self):
        return sorted((self.info.folder / FOLDER).glob("events.out.tfevents.*"))
