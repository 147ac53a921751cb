"""One trial: build from a TrialSpec, train, evaluate, checkpoint, report.

No Ray here: the study runner wraps :func:`run_trial` in a Ray Tune trainable, and
``ganbench trial`` calls it in-process. Data flows one way::

    TrialSpec -> build (data, G, D, G_ema, optimizers, variants) -> train loop
              -> evaluate every eval.every -> report row -> TrialRecord on disk

Rerunning on the same directory resumes from the last checkpoint that verifies: the
metrics series is truncated back to that checkpoint's iteration, so it has neither
duplicated nor missing iterations, and all RNG states are restored, so on the same
machine the resumed run computes the same losses as an uninterrupted one.
"""
from __future__ import annotations

import copy
import os
import platform
import random
import resource
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from harness import checkpoint as ckpt
from harness import performance
from harness.data import TrainingData, load_image_set
from harness.errors import ConfigError
from harness.interfaces import EvalContext
from harness.metrics import evaluate, prepare as prepare_metrics
from harness.metrics.generation import FittingGenerator
from harness.registry import ARCHITECTURES, AUGMENTS, LOSSES, REGULARIZERS, TRANSFERS
from harness.spec import TrialSpec, parse_trial
from harness.steps import Models, Sampler, all_finite, discriminator_step, generator_step, update_ema
from harness.store import TrialRecord, atomic_write_json, atomic_write_text

GRID_SIZE = 64  # samples in a sample grid (8 x 8)

ReportCallback = Callable[[Dict[str, Any], "Trial"], None]


@dataclass
class TrialResult:
    status: str
    iteration: int
    out_dir: Path
    last_report: Optional[Dict[str, Any]] = None
    error: Optional[str] = None


def resolve_device(spec: TrialSpec) -> torch.device:
    device = torch.device(spec.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", spec.device, "cpu (CUDA is not available on this machine)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("device", spec.device, f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", spec.device, "cpu (MPS is not available on this machine)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


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


class Trial:
    """A built trial: everything the loop needs, plus its record on disk."""

    def __init__(self, spec: TrialSpec, out_dir: os.PathLike, callbacks: Optional[List[ReportCallback]] = None,
                 progress: bool = False):
        self.spec = spec
        self.record = TrialRecord(out_dir)
        self.callbacks = list(callbacks or [])
        self.progress = progress
        self.iteration = 0
        self.samples_seen = 0
        self.wall_offset = 0.0  # seconds accumulated before a resume
        self.eval_s = 0.0
        self.overhead_s = 0.0  # eval + checkpoint + samples + reporting
        self.loss_sums: Dict[str, float] = {}
        self.loss_count = 0
        self.best: Dict[str, float] = {}
        self.metric_cache: Dict[str, Any] = {}
        self.last_report: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        spec = self.spec
        self.device = resolve_device(spec)
        torch.set_num_threads(spec.threads)
        seed_everything(spec.seed)
        image_set = load_image_set(spec.dataset)
        self.data = TrainingData(image_set, self.device, hflip=spec.dataset.hflip)
        arch = ARCHITECTURES.build(
            spec.architecture.name, spec.architecture.kwargs, "architecture.name",
            resolution=spec.dataset.resolution, channels=spec.dataset.channels,
        )
        G, D = arch.make_generator(), arch.make_discriminator()
        self.transfer = TRANSFERS.build(spec.transfer.method, spec.transfer.kwargs, "transfer.method",
                                        source=spec.transfer.source, spec=spec)
        G, D = self.transfer.prepare(G.to(self.device), D.to(self.device), self.device)
        G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        o = spec.optimization
        opt_g = torch.optim.Adam(G.parameters(), lr=o.lr_g, betas=o.betas, eps=o.eps)
        opt_d = torch.optim.Adam(D.parameters(), lr=o.lr_d, betas=o.betas, eps=o.eps)
        augment = AUGMENTS.build(spec.augment.policy, spec.augment.kwargs, "augment.policy",
                                 channels=spec.dataset.channels).to(self.device)
        regs = [REGULARIZERS.build(r.name, r.kwargs, f"regularizers[{i}].name", weight=r.weight,
                                   iterations=o.iterations)
                for i, r in enumerate(spec.regularizers)]
        loss = LOSSES.build(spec.loss.name, spec.loss.kwargs, "loss.name")
        self.models = Models(G, D, G_ema, opt_g, opt_d, loss, augment, regs, [r.name for r in spec.regularizers])
        self.performance = performance.apply(spec.performance, self.models, self._probe_step)
        prepare_metrics(spec.eval.metrics, self.device)
        self.sampler = Sampler(spec.seed)
        # Fixed noise for sample grids and evaluation: the same latents at every
        # evaluation, so the series measures the generator, not the draw.
        self.eval_seed = spec.seed + 1_000_003
        self.grid_z = G.sample_latent(GRID_SIZE, torch.Generator().manual_seed(self.eval_seed),
                                      spec.eval.truncation)
        self.eval_samples = FittingGenerator(G_ema, spec.eval.batch_size, self.eval_seed, self.device,
                                             spec.eval.truncation)

    def _probe_step(self, models: Models) -> None:
        """One D and one G step of ``models`` (a copy) on throw-away draws: what a
        compiled model must survive before the trial trusts it."""
        o = self.spec.optimization
        sampler = Sampler(self.spec.seed)
        discriminator_step(models, self.data, sampler, o.batch_size, 1, 0, self.device)
        generator_step(models, sampler, o.batch_size, 1, 0, self.device)

    def describe(self) -> Dict[str, Any]:
        m = self.models
        return {
            "G_parameters": count_parameters(m.G),
            "D_parameters": count_parameters(m.D),
            "dataset": self.data.name,
            "dataset_images": len(self.data),
            "dataset_fingerprint": self.data.fingerprint,
            "effective_batch_d": self.spec.optimization.effective_batch_d,
            "effective_batch_g": self.spec.optimization.effective_batch_g,
        }

    # ------------------------------------------------------------- checkpoint
    def state(self) -> Dict[str, Any]:
        m = self.models
        np_state = np.random.get_state()
        state = {
            "iteration": self.iteration,
            "samples_seen": self.samples_seen,
            "wall_s": self.wall_s(),
            "eval_s": self.eval_s,
            "overhead_s": self.overhead_s,
            "loss_sums": dict(self.loss_sums),
            "loss_count": self.loss_count,
            "best": dict(self.best),
            "G": m.G.state_dict(),
            "D": m.D.state_dict(),
            "G_ema": m.G_ema.state_dict(),
            "opt_g": m.opt_g.state_dict(),
            "opt_d": m.opt_d.state_dict(),
            "augment": m.augment.state_dict(),
            "regularizers": [r.state_dict() for r in m.regularizers],
            "transfer": self.transfer.state_dict(),
            "rng": {
                "sampler": self.sampler.generator.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                          int(np_state[3]), float(np_state[4])],
                "python": _python_rng_state(),
            },
            "config": self.spec.to_dict(),
        }
        return state

    def load_state(self, state: Dict[str, Any]) -> None:
        m = self.models
        self.iteration = int(state["iteration"])
        self.samples_seen = int(state["samples_seen"])
        self.wall_offset = float(state["wall_s"])
        self.eval_s = float(state["eval_s"])
        self.overhead_s = float(state["overhead_s"])
        self.loss_sums = dict(state["loss_sums"])
        self.loss_count = int(state["loss_count"])
        self.best = dict(state["best"])
        m.G.load_state_dict(state["G"])
        m.D.load_state_dict(state["D"])
        m.G_ema.load_state_dict(state["G_ema"])
        m.opt_g.load_state_dict(state["opt_g"])
        m.opt_d.load_state_dict(state["opt_d"])
        m.augment.load_state_dict(state["augment"])
        for reg, reg_state in zip(m.regularizers, state["regularizers"]):
            reg.load_state_dict(reg_state)
        self.transfer.load_state_dict(state["transfer"])
        rng = state["rng"]
        self.sampler.generator.set_state(rng["sampler"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np_state = rng["numpy"]
        np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), np_state[2], np_state[3], np_state[4]))
        _set_python_rng_state(rng["python"])

    def save_checkpoint(self) -> None:
        ckpt.save(self.record.checkpoints_dir, self.iteration, self.state(), keep=self.spec.keep_checkpoints)

    # ---------------------------------------------------------------- timing
    def wall_s(self) -> float:
        return self.wall_offset + (time.perf_counter() - self.t_start)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -------------------------------------------------------------- evaluate
    def generate(self, n: int):
        """Batches of EMA-generator samples from the fixed evaluation noise."""
        return self.eval_samples(n)

    def evaluate(self) -> Dict[str, Any]:
        if not self.spec.eval.metrics:
            return {"values": {}, "protocol": {}, "higher_is_better": {}}
        ctx = EvalContext(
            real=self.data.rgb, generate=self.generate, n_fake=self.spec.eval.n_samples, device=self.device,
            seed=self.spec.seed, dataset_fingerprint=self.data.rgb_fingerprint, cache=self.metric_cache,
        )
        return evaluate(self.spec.eval.metrics, ctx)

    @torch.no_grad()
    def save_samples(self) -> Path:
        import torchvision.utils as vutils

        G = self.models.G_ema
        images = G(self.grid_z.to(self.device)).float().cpu().add(1).div(2).clamp(0, 1)
        nrow = int(GRID_SIZE ** 0.5)
        grid = vutils.make_grid(images[:, :3], nrow=nrow, padding=1)
        if images.shape[1] == 4:  # seed D: show the generated mask under the RGB grid
            mask = vutils.make_grid(images[:, 3:4].expand(-1, 3, -1, -1), nrow=nrow, padding=1)
            grid = torch.cat([grid, mask], dim=1)
        path = self.record.samples_dir / f"samples-{self.iteration:08d}.png"
        tmp = path.with_name("." + path.name + ".tmp.png")
        vutils.save_image(grid, str(tmp))
        os.replace(tmp, path)
        return path

    # ---------------------------------------------------------------- report
    def report(self, evaluation: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        o = self.spec.optimization
        losses = {k: v / max(self.loss_count, 1) for k, v in self.loss_sums.items()}
        wall_s = self.wall_s()
        row: Dict[str, Any] = {
            "iteration": self.iteration,
            "samples_seen": self.samples_seen,
            "wall_s": round(wall_s, 4),
            "train_s": round(wall_s - self.overhead_s, 4),
            "eval_s": round(self.eval_s, 4),
            "losses": losses,
            "effective_batch": o.effective_batch_d,
            "effective_batch_g": o.effective_batch_g,
            "stage": self.stage,
            "performance": self.performance,
            "augment": self.models.augment.stats(),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        reg_stats = {k: v for r in self.models.regularizers for k, v in r.stats().items()}
        if reg_stats:
            row["regularizers"] = reg_stats
        if self.device.type == "cuda":
            row["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        if evaluation is not None:
            row["metrics"] = evaluation["values"]
            row["protocol"] = evaluation["protocol"]
            row["eval_environment"] = evaluation.get("environment", {})
            for name, value in evaluation["values"].items():
                better = max if evaluation["higher_is_better"].get(name, False) else min
                self.best[name] = better(self.best.get(name, value), value)
            row["best"] = dict(self.best)
        self.loss_sums, self.loss_count = {}, 0
        self.record.append_report(row)
        self.last_report = row
        for callback in self.callbacks:
            callback(row, self)
        return row

    # ------------------------------------------------------------------- run
    def run(self) -> TrialResult:
        """Train to the end of the budget (resuming from the record if it has a checkpoint)."""
        finished = self.start()
        if finished is not None:
            return finished
        bar = _progress_bar(self.spec.optimization.iterations, self.iteration) if self.progress else None
        try:
            result = self.advance(None, bar)
        finally:
            if bar is not None:
                bar.close()
        assert result is not None
        return result

    def start(self) -> Optional[TrialResult]:
        """Build, then resume from the last checkpoint that verifies (or start fresh).

        Returns the finished result when the record already holds a completed or diverged
        trial (nothing to do), else None: the trial is ready for :meth:`advance`.
        """
        spec, record = self.spec, self.record
        self._check_config_on_disk()
        previous = record.status()
        if previous and previous["status"] in ("completed", "diverged"):
            reports = record.reports()
            self.iteration = int(previous.get("iteration", 0))
            self.last_report = reports[-1] if reports else None
            return TrialResult(previous["status"], self.iteration, record.root, self.last_report,
                               previous.get("error"))
        record.create()
        if not hasattr(self, "models"):
            self.build()
        self.last_report = None
        # Load on the CPU: RNG states must stay CPU byte tensors; load_state_dict copies
        # weights and optimizer state onto the parameters' device.
        state = ckpt.load_latest(record.checkpoints_dir, map_location="cpu")
        if state is not None:
            self.load_state(state)
            kept = record.truncate_reports(self.iteration)
            self.last_report = kept[-1] if kept else None
        else:
            if record.metrics_path.exists():  # killed before its first checkpoint: start over
                record.truncate_reports(0)
            atomic_write_text(record.config_path, spec.to_yaml())
            env = environment(spec, self.device)
            env.update(self.describe())
            env["dataset_info"] = self.data.info
            env["source_model"] = self.transfer.source_fingerprint()
            atomic_write_json(record.env_path, env)
        self.resumed_from = self.iteration
        record.set_status("running", iteration=self.iteration, pid=os.getpid(), host=socket.gethostname())
        self.t_start = time.perf_counter()
        self.stage = self.transfer.set_stage(self.models.G, self.models.D, self.iteration)
        self._stop = False
        return None

    def advance(self, until: Optional[int] = None, bar=None) -> Optional[TrialResult]:
        """Train up to iteration ``until`` (None: to the end of the budget).

        Returns the result once the trial has finished (completed: the iteration or time
        budget is spent; diverged: a non-finite loss), else None. An exception marks the
        record ``failed`` with its error and propagates.
        """
        try:
            status = self._loop(until, bar)
        except Exception as err:
            self.record.set_status("failed", iteration=self.iteration, error=f"{type(err).__name__}: {err}",
                                   traceback=traceback.format_exc())
            raise
        if status is None:
            return None
        return TrialResult(status["status"], self.iteration, self.record.root, self.last_report,
                           status.get("error"))

    def next_eval_iteration(self) -> int:
        """The iteration of the next evaluation (or of the end of the budget)."""
        every, total = self.spec.eval.every, self.spec.optimization.iterations
        if every <= 0:
            return total
        return min(total, (self.iteration // every + 1) * every)

    def checkpoint_now(self) -> None:
        """Write a checkpoint at the current iteration unless one exists already."""
        if ckpt.latest_iteration(self.record.checkpoints_dir) != self.iteration:
            self.save_checkpoint()

    def stop(self, status: str = "stopped") -> None:
        """Mark a trial that is not finished but will not continue (a scheduler stopped it)."""
        current = self.record.status()
        if current and current["status"] == "running":
            self.record.set_status(status, iteration=self.iteration, best=self.best, wall_s=self.wall_s())

    def _check_config_on_disk(self) -> None:
        if not self.record.config_path.exists():
            return
        import yaml

        on_disk = yaml.safe_load(self.record.config_path.read_text())
        try:
            # Through the spec, so a section added since (with its default) does not make
            # a trial written by an older ganbench look like another trial.
            on_disk = parse_trial(on_disk).to_dict()
        except ConfigError:
            pass
        if on_disk != self.spec.to_dict():
            raise ConfigError(
                "out", str(self.record.root),
                "an empty directory or one holding this same trial (its config.yaml differs; "
                "use another --out to keep both)",
            )

    def _loop(self, until: Optional[int], bar) -> Optional[Dict[str, Any]]:
        spec, m = self.spec, self.models
        o = spec.optimization
        total = o.iterations if until is None else min(until, o.iterations)
        while self.iteration < total and not self._stop:
            it = self.iteration
            self.stage = self.transfer.set_stage(m.G, m.D, it)
            for module in (m.G, m.D, m.G_ema):
                module.set_progress(it)
            step_stats: Dict[str, torch.Tensor] = {}
            for _ in range(o.d_steps):
                d_stats = discriminator_step(m, self.data, self.sampler, o.batch_size, o.accumulation.d, it,
                                             self.device)
                bad = all_finite(d_stats)
                if bad is not None:
                    return self._diverged(bad)
                m.opt_d.step()
                self.samples_seen += o.batch_size * o.accumulation.d
                for k, v in d_stats.items():
                    step_stats[k] = step_stats.get(k, 0) + v / o.d_steps
            g_stats = generator_step(m, self.sampler, o.batch_size, o.accumulation.g, it, self.device)
            bad = all_finite(g_stats)
            if bad is not None:
                return self._diverged(bad)
            m.opt_g.step()
            step_stats.update(g_stats)
            update_ema(m.G, m.G_ema, spec.ema.decay if it >= spec.ema.start else 0.0)
            self.iteration = it + 1
            for k, v in step_stats.items():
                self.loss_sums[k] = self.loss_sums.get(k, 0.0) + float(v)
            self.loss_count += 1
            self._after_step(bar)
        if self.iteration < o.iterations and not self._stop:
            return None  # paused at ``until``; more to train
        self.record.set_status("completed", iteration=self.iteration, best=self.best,
                               last=(self.last_report or {}).get("metrics", {}), wall_s=self.wall_s(),
                               budget=self.budget_reason())
        return {"status": "completed"}

    def budget_reason(self) -> str:
        return "seconds" if self._stop and self.iteration < self.spec.optimization.iterations else "iterations"

    def _time_up(self) -> bool:
        budget = self.spec.optimization.time_budget_s
        return budget is not None and (self.wall_s() - self.overhead_s) >= budget

    def _after_step(self, bar) -> None:
        spec, i = self.spec, self.iteration
        # A time budget ends the trial after the step that spends it: that step is then
        # the last one (evaluated, checkpointed) just as the final iteration would be.
        if not self._stop and self._time_up():
            self._stop = True
        last = i == spec.optimization.iterations or self._stop
        do_eval = last or (spec.eval.every > 0 and i % spec.eval.every == 0)
        do_log = do_eval or i % spec.log_every == 0
        do_samples = spec.sample_every > 0 and (i % spec.sample_every == 0 or last)
        do_ckpt = last or i % spec.checkpoint_every == 0
        if not (do_log or do_samples or do_ckpt):
            if bar is not None:
                bar.update(1)
            return
        self._sync()
        t0 = time.perf_counter()
        evaluation = None
        if do_eval:
            evaluation = self.evaluate()
            self.eval_s += time.perf_counter() - t0
        if do_samples:
            self.save_samples()
        self.overhead_s += time.perf_counter() - t0
        if do_log:
            row = self.report(evaluation)
            if bar is not None:
                bar.set_postfix_str(_postfix(row), refresh=False)
        t1 = time.perf_counter()
        if do_ckpt:
            self.save_checkpoint()
        self.overhead_s += time.perf_counter() - t1
        if bar is not None:
            bar.update(1)

    def _diverged(self, term: str) -> Dict[str, Any]:
        error = f"non-finite {term} at iteration {self.iteration + 1}"
        self.record.set_status("diverged", iteration=self.iteration, error=error, best=self.best)
        return {"status": "diverged", "error": error}


def _python_rng_state() -> List[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_rng_state(state: List[Any]) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))


def _postfix(row: Dict[str, Any]) -> str:
    parts = [f"d {row['losses'].get('d_loss', float('nan')):.3f}", f"g {row['losses'].get('g_loss', float('nan')):.3f}"]
    for k, v in (row.get("metrics") or {}).items():
        parts.append(f"{k} {v:.4g}")
    return " ".join(parts)


def _progress_bar(total: int, initial: int):
    from tqdm import tqdm

    # Redraw often on a terminal; rarely when the output goes to a log file.
    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=sys.stderr,
                mininterval=0.5 if interactive else 30.0)


def run_trial(spec: Any, out_dir: os.PathLike, callbacks: Optional[List[ReportCallback]] = None,
              progress: bool = False) -> TrialResult:
    """Run (or resume) one trial into ``out_dir``; ``spec`` is a TrialSpec or a mapping."""
    if not isinstance(spec, TrialSpec):
        spec = parse_trial(spec)
    return Trial(spec, out_dir, callbacks, progress).run()
