"""``python -m harness.gpucheck``: what a GPU machine does with ganbench's trials, in one
command and one JSON file.

Run from a plain checkout (``PYTHONPATH=.``) on a machine with torch, numpy, PyYAML,
h5py, safetensors, Pillow, torchvision and tqdm — Ray and Optuna are not needed, nothing is
downloaded (the trials train on the generated ``shapes`` dataset). It measures:

- **steps**: a 32 px DCGAN (width 64, batch 64) and a 128 px BigGAN (width 96, attention
  at 64 px, batch 32) training step in each precision the device supports (fp32, bf16,
  fp16): iterations per second over ``--seconds`` of steady training, peak memory
  (``torch.cuda.max_memory_allocated``), whether every loss stayed finite, and fp16's
  scales and skipped steps;
- **switches**: the DCGAN in fp32 without channels-last, and with ``torch.compile``
  (compile time apart), against the default;
- **packed**: 1, 2, 4 and 8 DCGAN trial processes started together on the one device,
  each a fixed number of iterations (about ``--packed-seconds`` of training alone):
  trials per hour against one trial alone (process start and CUDA initialisation
  included: what a study of small trials pays);
- **ray**: where Ray is installed (and not ``--no-ray``), the same DCGAN trials as a
  4-trial study with ``resources.gpus: 0.25``: trials per hour through Ray; and one
  DCGAN trial on Ray Train's TorchTrainer with one worker holding the whole GPU (NCCL):
  the multi-worker trial's CUDA path (``harness.workers_trainable``) on one GPU.

The JSON is rewritten (atomically) after every measurement, so a run stopped by a time
limit still leaves what it measured. ``--quick`` shrinks everything (the test suite runs it
on the CPU); a CPU run skips what needs CUDA (fp16, peak memory) and says so.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

DCGAN32 = {"dataset": {"name": "shapes", "resolution": 32, "channels": 3, "kwargs": {"count": 512}},
           "architecture": {"name": "dcgan", "kwargs": {"width": 64, "z_dim": 100}},
           "optimization": {"batch_size": 64}}
BIGGAN128 = {"dataset": {"name": "shapes", "resolution": 128, "channels": 3, "kwargs": {"count": 256}},
             "architecture": {"name": "biggan", "kwargs": {"width": 96, "z_dim": 120, "shared_dim": 128,
                                                           "attention": 64}},
             "optimization": {"batch_size": 32}}
QUICK = {"dcgan32": {"dataset": {"resolution": 16, "kwargs": {"count": 64}},
                     "architecture": {"kwargs": {"width": 8, "z_dim": 16}}, "optimization": {"batch_size": 8}},
         "biggan128": {"dataset": {"resolution": 16, "kwargs": {"count": 64}},
                       "architecture": {"kwargs": {"width": 4, "z_dim": 12, "shared_dim": 8, "attention": 8}},
                       "optimization": {"batch_size": 8}}}
PACKED = (1, 2, 4, 8)


def _merge(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def trial_config(model: str, device: str, quick: bool, iterations: int = 10 ** 6, **performance: Any) -> Dict[str, Any]:
    """A trial of ``model`` (dcgan32 or biggan128) that only trains: no evaluation, no
    samples, no trackers, one checkpoint at the end."""
    cfg = _merge({"dcgan32": DCGAN32, "biggan128": BIGGAN128}[model], QUICK[model] if quick else {})
    cfg["optimization"] = dict(cfg["optimization"], iterations=iterations)
    return {**cfg, "name": model, "device": device, "seed": 0, "threads": 1 if device == "cpu" else 4,
            "loss": {"name": "hinge"}, "eval": {"every": 0, "metrics": []}, "sample_every": 0,
            "log_every": 10 ** 6, "checkpoint_every": 10 ** 6, "tracking": {"tensorboard": None},
            "performance": performance}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def measure_steps(config: Dict[str, Any], folder: Path, seconds: float, warmup: int = 5) -> Dict[str, Any]:
    """Train ``config`` for ``warmup`` iterations, then in chunks until ``seconds`` have
    passed: iterations per second, peak memory, finiteness, what was in effect."""
    import torch

    from harness.spec import parse_trial
    from harness.trial import Trial

    device = config["device"]
    t0 = time.perf_counter()
    trial = Trial(parse_trial(config), folder)
    try:
        assert trial.start() is None
        trial.advance(warmup)
        _sync(device)
        built_s = time.perf_counter() - t0
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        chunk, done, t1 = 5, 0, time.perf_counter()
        while True:
            result = trial.advance(trial.iteration + chunk)
            done += chunk
            _sync(device)
            elapsed = time.perf_counter() - t1
            if result is not None or elapsed >= seconds:
                break
            chunk = min(chunk * 2, 200)
        losses = trial.state.take_mean_losses()
        out: Dict[str, Any] = {
            "iterations": done, "seconds": round(elapsed, 3), "it_per_s": round(done / elapsed, 3),
            "build_and_warmup_s": round(built_s, 2), "status": "diverged" if result is not None else "ok",
            "losses_finite": all(v == v and abs(v) != float("inf") for v in losses.values()),
            "performance": trial.performance,
        }
        if device.startswith("cuda"):
            out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
        if trial.models.precision.scaled:
            out["amp"] = trial.models.precision.stats()
        return out
    finally:
        trial.close()
        del trial
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def precisions(device: str) -> List[str]:
    import torch

    from harness.precision import PRECISION_DEVICES

    kind = device.split(":")[0]
    able = [p for p, kinds in PRECISION_DEVICES.items() if kind in kinds]
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        able.remove("bf16")
    return able


def _worker(args: argparse.Namespace) -> int:
    """One packed trial process: train the DCGAN ``--iterations`` and print its seconds."""
    from harness.trial import run_trial

    t0 = time.perf_counter()
    result = run_trial(trial_config("dcgan32", args.device, args.quick, iterations=args.iterations), args.worker)
    print(json.dumps({"status": result.status, "seconds": time.perf_counter() - t0}))
    return 0 if result.status == "completed" else 1


def measure_packed(device: str, quick: bool, iterations: int, folder: Path, counts=PACKED) -> Dict[str, Any]:
    """``k`` trial processes started together, for each ``k``: wall seconds until the last
    finishes, trials per hour, and that against one alone."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                                                      + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out: Dict[str, Any] = {"iterations_per_trial": iterations, "runs": {}}
    for k in counts:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "harness.gpucheck", "--worker", str(folder / f"{k}-{i}"),
                                   "--device", device, "--iterations", str(iterations)] + (["--quick"] if quick else []),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for i in range(k)]
        results = [p.communicate() for p in procs]
        wall = time.perf_counter() - t0
        failed = [err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}"
                  for p, (_, err) in zip(procs, results) if p.returncode != 0]
        run = {"wall_s": round(wall, 2), "trials_per_hour": round(k * 3600 / wall, 1), "failed": failed}
        out["runs"][str(k)] = run
        alone = out["runs"].get("1")
        if alone:
            run["throughput_vs_one"] = round(run["trials_per_hour"] / alone["trials_per_hour"], 3)
    return out


def measure_ray(device: str, quick: bool, iterations: int, folder: Path) -> Dict[str, Any]:
    """Four DCGAN trials as a study on an embedded Ray, a quarter of the GPU each (a
    whole CPU each on a CPU run)."""
    from harness import api

    gpu = device.startswith("cuda")
    study = {"name": "gpucheck_packed", "base": trial_config("dcgan32", "cuda" if gpu else device, quick, iterations),
             "seeds": [0, 1, 2, 3], "resources": {"cpus": 1, "gpus": 0.25 if gpu else 0}}
    t0 = time.perf_counter()
    summary = api.run(study, results=str(folder), out=lambda line: None)
    wall = time.perf_counter() - t0
    statuses = sorted(set(summary["status"])) if len(summary) else []
    return {"trials": len(summary), "statuses": statuses, "wall_s": round(wall, 2),
            "trials_per_hour": round(len(summary) * 3600 / wall, 1), "resources": study["resources"]}


def measure_ray_train(device: str, quick: bool, iterations: int, folder: Path) -> Dict[str, Any]:
    """One DCGAN trial as a study on Ray Train's TorchTrainer: one worker with the whole
    GPU (NCCL; gloo and a CPU on a CPU run), as a multi-worker trial runs each worker."""
    from harness import api
    from harness.runner import run_study
    from harness.store import StudyRecord

    gpu = device.startswith("cuda")
    study = {"name": "gpucheck_ray_train", "base": trial_config("dcgan32", "cuda" if gpu else device, quick, iterations),
             "seeds": [0], "resources": {"workers": 1, "cpus": 1, "gpus": 1 if gpu else 0}}
    t0 = time.perf_counter()
    summary = run_study(api.plan(study), results=str(folder), out=lambda line: None, ray_train=True)
    wall = time.perf_counter() - t0
    (trial,) = StudyRecord.at(folder, study["name"]).trial_records()
    rows = trial.reports()
    last = rows[-1] if rows else {}
    return {"statuses": sorted(set(summary["status"])), "wall_s": round(wall, 2),
            "iteration": last.get("iteration"), "rows": len(rows), "performance": last.get("performance"),
            "resources": study["resources"]}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def environment(device: str) -> Dict[str, Any]:
    import platform

    import torch

    env: Dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
                           "ray": _installed("ray")}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env.update({"gpu": props.name, "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                    "memory_gb": round(props.total_memory / 2 ** 30, 1), "bf16": torch.cuda.is_bf16_supported()})
    return env


def _write(path: Path, report: Dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _guarded(report: Dict[str, Any], section: str, key: str, path: Path, fn, *args) -> Optional[Dict[str, Any]]:
    """Run one measurement; its error is recorded in its place (the others still run)."""
    try:
        value = fn(*args)
    except Exception as err:  # one failing case must not cost the rest of the run
        value = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}
    report.setdefault(section, {})[key] = value
    _write(path, report)
    print(f"{section} {key}: {json.dumps(value)[:300]}", flush=True)
    return value


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpucheck.json", help="the JSON written (default: gpucheck.json)")
    parser.add_argument("--device", default=None, help="cuda (the default where there is one), cuda:N or cpu")
    parser.add_argument("--seconds", type=float, default=None, help="steady training timed per case (default 10)")
    parser.add_argument("--packed-seconds", type=float, default=None,
                        help="training seconds of one packed trial alone (default 15)")
    parser.add_argument("--quick", action="store_true", help="tiny models and timings (a CPU smoke run)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray-packed study even where Ray is installed")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile case")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.worker:
        return _worker(args)
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 10.0)
    packed_s = args.packed_seconds if args.packed_seconds is not None else (2.0 if args.quick else 15.0)
    path = Path(args.out).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report: Dict[str, Any] = {"environment": environment(args.device), "quick": args.quick,
                              "seconds_per_case": seconds, "started": time.time()}
    if not args.device.startswith("cuda"):
        report["not_measured"] = ["fp16 (CUDA only)", "peak memory (CUDA only)"]
    _write(path, report)
    with tempfile.TemporaryDirectory(prefix="gpucheck-") as tmp:
        work = Path(tmp)
        for model in ("dcgan32", "biggan128"):
            for precision in precisions(args.device):
                _guarded(report, "steps", f"{model}/{precision}", path, measure_steps,
                         trial_config(model, args.device, args.quick, precision=precision),
                         work / f"{model}-{precision}", seconds)
        _guarded(report, "switches", "dcgan32/fp32/nchw", path, measure_steps,
                 trial_config("dcgan32", args.device, args.quick, channels_last=False), work / "nchw", seconds)
        if not args.no_compile:
            _guarded(report, "switches", "dcgan32/fp32/compile", path, measure_steps,
                     trial_config("dcgan32", args.device, args.quick, compile=True), work / "compile", seconds)
        alone = (report["steps"].get("dcgan32/fp32") or {}).get("it_per_s") or 10.0
        iterations = max(10, int(alone * packed_s))
        counts = (1, 2) if args.quick else PACKED
        _guarded(report, "packed", "processes", path, measure_packed, args.device, args.quick, iterations,
                 work / "packed", counts)
        if args.no_ray or not report["environment"]["ray"]:
            report["ray"] = {"skipped": "--no-ray" if args.no_ray else "ray is not installed"}
        else:
            _guarded(report, "ray", "study", path, measure_ray, args.device, args.quick, iterations, work / "ray")
            _guarded(report, "ray", "train", path, measure_ray_train, args.device, args.quick, iterations,
                     work / "ray-train")
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    _write(path, report)
    print(f"wrote {path} ({report['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
