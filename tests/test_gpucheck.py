"""The device check (python -m harness.gpucheck) from a plain checkout, as it runs on a GPU
machine without Ray, Optuna or the analysis stack — here on the CPU, --quick."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What the device machine lacks: importing any of them fails, as it would there.
ABSENT = ("ray", "optuna", "pandas", "plotly", "kaleido", "onnxruntime", "pyarrow", "mlflow", "wandb", "tensorboard")
BLOCKER = f'''
import sys
from importlib.machinery import PathFinder
ABSENT = {ABSENT!r}
class _WithoutAbsent(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            return None  # as if it were not installed
        return PathFinder.find_spec(name, path, target)
sys.meta_path[:] = [_WithoutAbsent if f is PathFinder else f for f in sys.meta_path]
'''


def test_the_device_check_runs_from_a_checkout_without_ray_and_writes_one_json(tmp_path):
    blocker = tmp_path / "absent"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]), GANBENCH_CACHE=str(tmp_path / "c"))
    out = tmp_path / "check" / "gpucheck.json"
    proc = subprocess.run([sys.executable, "-m", "harness.gpucheck", "--quick", "--device", "cpu", "--no-compile",
                           "--out", str(out)], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    steps = report["steps"]
    assert sorted(steps) == ["biggan128/bf16", "biggan128/fp32", "dcgan32/bf16", "dcgan32/fp32"]
    for name, case in {**steps, **report["switches"]}.items():
        assert "error" not in case, (name, case)
        assert case["it_per_s"] > 0 and case["losses_finite"] and case["status"] == "ok", (name, case)
        assert case["performance"]["precision"] == name.split("/")[1]
    assert report["switches"]["dcgan32/fp32/nchw"]["performance"]["channels_last"] is False
    runs = report["packed"]["processes"]["runs"]
    assert sorted(runs) == ["1", "2"] and all(not r["failed"] and r["trials_per_hour"] > 0 for r in runs.values())
    assert runs["2"]["throughput_vs_one"] == round(runs["2"]["trials_per_hour"] / runs["1"]["trials_per_hour"], 3)
    assert report["ray"] == {"skipped": "ray is not installed"} and report["environment"]["ray"] is False
    assert report["not_measured"] == ["fp16 (CUDA only)", "peak memory (CUDA only)"]
    assert [p.name for p in out.parent.iterdir()] == ["gpucheck.json"]  # written atomically, nothing else
    assert not list(tmp_path.glob("gpucheck-*")) and not (tmp_path / "results").exists()
