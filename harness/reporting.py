"""What a trial tells the world: evaluations, sample grids, report rows, its environment.

The :class:`Reporter` owns the fixed evaluation noise (the same latents at every
evaluation, so the series measures the generator, not the draw), the metric cache and
the report callbacks; it writes rows and sample grids into the trial's record.
"""
from __future__ import annotations

import os
import platform
import resource
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from harness.interfaces import EvalContext
from harness.metrics import evaluate
from harness.metrics.generation import FittingGenerator
from harness.spec import TrialSpec
from harness.store import TrialRecord

GRID_SIZE = 64  # samples in a sample grid (8 x 8)
EVAL_SEED_OFFSET = 1_000_003

ReportCallback = Callable[[Dict[str, Any], Any], None]


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def host_load() -> Dict[str, Any]:
    """The host's 1-minute load average and core count (every report row records them, so
    analysis can tell a trial that shared its cores from one that had them)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # a platform without load averages
        return {}
    return {"host_load": round(load, 2), "host_cpus": os.cpu_count()}


def environment(spec: TrialSpec, device: torch.device) -> Dict[str, Any]:
    import torchvision

    env: Dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    try:
        from importlib.metadata import version

        env["ganbench"] = version("ganbench")
    except Exception:  # running from a source tree without installation
        env["ganbench"] = "source"
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


class Reporter:
    """Evaluates the EMA generator, writes sample grids and report rows of one trial."""

    def __init__(self, spec: TrialSpec, record: TrialRecord, G: torch.nn.Module, G_ema: torch.nn.Module,
                 device: torch.device, callbacks: Optional[List[ReportCallback]] = None):
        self.spec, self.record, self.G_ema, self.device = spec, record, G_ema, device
        self.callbacks = list(callbacks or [])
        self.metric_cache: Dict[str, Any] = {}
        self.last_report: Optional[Dict[str, Any]] = None
        self.eval_seed = spec.seed + EVAL_SEED_OFFSET
        self.grid_z = G.sample_latent(GRID_SIZE, torch.Generator().manual_seed(self.eval_seed),
                                      spec.eval.truncation)
        self.eval_samples = FittingGenerator(G_ema, spec.eval.batch_size, self.eval_seed, device,
                                             spec.eval.truncation)

    def generate(self, n: int):
        """Batches of EMA-generator samples from the fixed evaluation noise."""
        return self.eval_samples(n)

    def evaluate(self, real: Any, real_fingerprint: str) -> Dict[str, Any]:
        if not self.spec.eval.metrics:
            return {"values": {}, "protocol": {}, "higher_is_better": {}}
        e = self.spec.eval
        ctx = EvalContext(real=real, generate=self.generate, n_fake=e.n_samples, device=self.device,
                          seed=self.spec.seed, dataset_fingerprint=real_fingerprint, cache=self.metric_cache,
                          truncation=e.truncation, sampling=self.G_ema.sampling(), options=dict(e.metric_options),
                          want_artifacts=True)
        return evaluate(e.metrics, ctx)

    @torch.no_grad()
    def save_samples(self, iteration: int) -> Path:
        import torchvision.utils as vutils

        images = self.G_ema(self.grid_z.to(self.device)).float().cpu().add(1).div(2).clamp(0, 1)
        nrow = int(GRID_SIZE ** 0.5)
        grid = vutils.make_grid(images[:, :3], nrow=nrow, padding=1)
        if images.shape[1] == 4:  # seed D: show the generated mask under the RGB grid
            mask = vutils.make_grid(images[:, 3:4].expand(-1, 3, -1, -1), nrow=nrow, padding=1)
            grid = torch.cat([grid, mask], dim=1)
        path = self.record.sample_path(iteration)
        tmp = path.with_name("." + path.name + ".tmp.png")
        vutils.save_image(grid, str(tmp))
        os.replace(tmp, path)
        self.record.publish(path)
        return path

    def save_pairs(self, iteration: int, name: str, pairs: Dict[str, Any]) -> Path:
        """The closest generated/training pairs of a memorisation metric as one PNG: the
        generated images in the top row, each one's nearest training image below it."""
        import torchvision.utils as vutils

        images = torch.cat([pairs["fake"], pairs["real"]]).add(1).div(2).clamp(0, 1)
        grid = vutils.make_grid(images, nrow=max(1, pairs["fake"].shape[0]), padding=1)
        path = self.record.pairs_path(iteration, name.split(".", 1)[1])
        tmp = path.with_name("." + path.name + ".tmp.png")
        vutils.save_image(grid, str(tmp))
        os.replace(tmp, path)
        self.record.publish(path)
        return path

    def write(self, row: Dict[str, Any], evaluation: Optional[Dict[str, Any]], best: Dict[str, float],
              trial: Any) -> Dict[str, Any]:
        """Complete ``row`` (memory, the evaluation and its directions), append it to the
        record and tell the callbacks."""
        row["peak_rss_mb"] = round(peak_rss_mb(), 1)
        if self.device.type == "cuda":
            row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        if evaluation is not None:
            row["metrics"] = evaluation["values"]
            row["protocol"] = evaluation["protocol"]
            row["eval_environment"] = evaluation.get("environment", {})
            # each value's direction travels with it, so analysis needs no metric registry
            row["higher_is_better"] = dict(evaluation["higher_is_better"])
            row["metric_of"] = dict(evaluation.get("metric_of") or {})
            row["metric_info"] = dict(evaluation.get("info") or {})
            pairs = {name: str(self.save_pairs(row["iteration"], name, art).name)
                     for name, art in (evaluation.get("artifacts") or {}).items() if name.startswith("nearest_pairs.")}
            if pairs:
                row["nearest_pairs"] = pairs
            row["best"] = dict(best)
        self.record.append_report(row)
        self.last_report = row
        for callback in self.callbacks:
            callback(row, trial)
        return row


def postfix(row: Dict[str, Any]) -> str:
    parts = [f"d {row['losses'].get('d_loss', float('nan')):.3f}", f"g {row['losses'].get('g_loss', float('nan')):.3f}"]
    for k, v in (row.get("metrics") or {}).items():
        parts.append(f"{k} {v:.4g}")
    return " ".join(parts)


def progress_bar(total: int, initial: int):
    from tqdm import tqdm

    # Redraw often on a terminal; rarely when the output goes to a log file.
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=sys.stderr,
                mininterval=0.5 if interactive else 30.0)


def progress_lines(label: str, total: int, out: Callable[[str], None] = print,
                   every_s: float = 15.0) -> ReportCallback:
    """A report callback printing one line at most every ``every_s`` seconds — phase,
    iterations, the latest metric, elapsed and ETA — for long steps run without a terminal
    (source pretraining in ``ganbench run``), so a log never shows minutes of silence."""
    import time

    t0 = time.monotonic()
    last: List[float] = [-float("inf")]
    first: List[int] = []  # the first reported iteration (a resumed run starts late)

    def callback(row: Dict[str, Any], trial: Any) -> None:
        now, it = time.monotonic(), int(row.get("iteration", 0))
        if not first:
            first.append(it)
        if now - last[0] < every_s and it < total and "metrics" not in row:
            return
        last[0] = now
        rate = (it - first[0]) / (now - t0) if it > first[0] else 0.0
        eta = f"{(total - it) / rate:.0f} s" if rate else "?"
        metrics = " ".join(f"{k} {v:.4g}" for k, v in (row.get("metrics") or {}).items())
        out(f"  {label}: iteration {it}/{total} ({100 * it / max(total, 1):.0f}%), "
            f"{now - t0:.0f} s elapsed, ETA {eta}" + (f", {metrics}" if metrics else ""))

    return callback

