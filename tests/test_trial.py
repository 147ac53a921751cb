"""End-to-end trials at 16 px: every architecture x loss, records, divergence, failure."""
import json
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from harness.errors import ConfigError
from harness.interfaces import Augment, Loss
from harness.registry import AUGMENTS, LOSSES
from harness.store import TrialRecord
from harness.trial import run_trial
from tests.conftest import TINY_ARCH_KWARGS, tiny_config

ARCHS = ["dcgan", "resnet", "biggan", "progressive"]
LOSS_NAMES = ["non_saturating", "hinge", "wgan_gp", "least_squares"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_every_architecture_and_loss_trains(tmp_path, arch, loss):
    cfg = tiny_config(**{"architecture.name": arch, "architecture.kwargs": TINY_ARCH_KWARGS[arch],
                         "loss.name": loss, "optimization.iterations": 20, "sample_every": 20,
                         "eval.every": 0})
    if loss == "wgan_gp":
        cfg["optimization"]["d_steps"] = 2
    result = run_trial(cfg, tmp_path / "t")
    assert result.status == "completed" and result.iteration == 20
    record = TrialRecord(tmp_path / "t")
    rows = record.reports()
    assert [r["iteration"] for r in rows] == [5, 10, 15, 20]
    for row in rows:
        assert all(np.isfinite(v) for v in row["losses"].values())
        assert row["wall_s"] >= row["train_s"] > 0
    d_steps = cfg["optimization"].get("d_steps", 1)
    assert rows[-1]["samples_seen"] == 20 * 8 * d_steps
    if loss == "wgan_gp":
        assert rows[-1]["losses"]["d_gp"] >= 0
    if arch == "biggan":
        assert rows[-1]["losses"]["g_arch_reg"] > 0
    assert (record.samples_dir / "samples-00000020.png").exists()
    assert record.status()["status"] == "completed"


def test_record_contents(tmp_path):
    cfg = tiny_config(**{"eval.metrics": ["swd"], "eval.every": 10, "optimization.iterations": 20})
    result = run_trial(cfg, tmp_path / "t")
    record = TrialRecord(tmp_path / "t")
    assert yaml.safe_load(record.config_path.read_text())["optimization"]["iterations"] == 20
    env = json.loads(record.env_path.read_text())
    for key in ("torch", "numpy", "python", "device", "threads", "dataset_fingerprint", "G_parameters"):
        assert key in env, key
    rows = record.reports()
    evals = [r for r in rows if "metrics" in r]
    assert [r["iteration"] for r in evals] == [10, 20]
    for r in evals:
        assert np.isfinite(r["metrics"]["swd"]) and r["metrics"]["swd"] > 0
        assert r["protocol"]["swd"]["n_fake"] == 32
        assert r["protocol"]["swd"]["reference"] == env["dataset_fingerprint"]
        assert r["eval_s"] > 0
        assert r["wall_s"] >= r["train_s"] + r["eval_s"] - 1e-3
    assert evals[-1]["best"]["swd"] == min(r["metrics"]["swd"] for r in evals)
    status = record.status()
    assert status["status"] == "completed" and status["iteration"] == 20
    assert result.last_report["iteration"] == 20
    for row in rows:
        for key in ("iteration", "samples_seen", "wall_s", "train_s", "eval_s", "losses", "peak_rss_mb",
                    "effective_batch"):
            assert key in row
    # a completed trial is not rerun
    again = run_trial(cfg, tmp_path / "t")
    assert again.status == "completed" and len(record.reports()) == len(rows)


def test_same_seed_same_numbers_different_seed_differs(tmp_path):
    a = run_trial(tiny_config(), tmp_path / "a")
    b = run_trial(tiny_config(), tmp_path / "b")
    c = run_trial(tiny_config(seed=2), tmp_path / "c")
    la = [r["losses"] for r in TrialRecord(a.out_dir).reports()]
    lb = [r["losses"] for r in TrialRecord(b.out_dir).reports()]
    lc = [r["losses"] for r in TrialRecord(c.out_dir).reports()]
    assert la == lb
    assert la != lc


def test_four_channel_trial_generates_mask(tmp_path):
    cfg = tiny_config(**{"dataset.channels": 4, "optimization.iterations": 10, "sample_every": 10})
    run_trial(cfg, tmp_path / "t")
    grid = Image.open(tmp_path / "t" / "samples" / "samples-00000010.png")
    # 8 x 8 RGB grid with an 8 x 8 mask grid below it: twice as tall as wide
    assert grid.size[1] == 2 * grid.size[0]


def test_rgb_and_rgb_mask_trials_share_the_metric_reference(tmp_path):
    # Metrics compare RGB, so the mask channel must not make the reference (and with it the
    # protocol the tables pool by) differ from the 3-channel trial's.
    refs, data = [], []
    for channels in (3, 4):
        out = tmp_path / f"c{channels}"
        run_trial(tiny_config(**{"dataset.channels": channels, "optimization.iterations": 4, "eval.every": 0,
                                 "eval.metrics": ["swd"], "eval.n_samples": 16}), out)
        evals = [r for r in TrialRecord(out).reports() if "metrics" in r]
        refs.append(evals[-1]["protocol"]["swd"]["reference"])
        data.append(json.loads((out / "env.json").read_text())["dataset_fingerprint"])
    assert refs[0] == refs[1] == data[0] and data[0] != data[1]


def test_hdf5_dataset_in_biggan_layout(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(20, 3, 16, 16), dtype=np.uint8)
    path = tmp_path / "set.hdf5"
    with h5py.File(path, "w") as fh:  # what BigGAN-PyTorch's make_hdf5.py writes
        fh.create_dataset("imgs", data=imgs)
        fh.create_dataset("labels", data=np.zeros(20, dtype=np.int64))
    cfg = tiny_config(**{"dataset.name": str(path), "dataset.kwargs": {}, "optimization.iterations": 5})
    result = run_trial(cfg, tmp_path / "t")
    env = json.loads((tmp_path / "t" / "env.json").read_text())
    assert result.status == "completed" and env["dataset_images"] == 20
    from harness.data import fingerprint

    assert env["dataset_fingerprint"] == fingerprint(imgs)


def test_missing_hdf5_is_a_config_error(tmp_path):
    cfg = tiny_config(**{"dataset.name": str(tmp_path / "absent.hdf5"), "dataset.kwargs": {}})
    with pytest.raises(ConfigError, match="dataset.name"):
        run_trial(cfg, tmp_path / "t")


def test_cuda_unavailable_is_a_config_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: covered by test_cuda_trial")
    with pytest.raises(ConfigError, match="^device"):
        run_trial(tiny_config(device="cuda"), tmp_path / "t")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_trial(tmp_path):
    result = run_trial(tiny_config(device="cuda", **{"eval.metrics": ["swd"]}), tmp_path / "t")
    assert result.status == "completed"
    assert "peak_cuda_mb" in TrialRecord(tmp_path / "t").reports()[-1]


def test_different_config_on_same_directory_is_refused(tmp_path):
    run_trial(tiny_config(**{"optimization.iterations": 5}), tmp_path / "t")
    before = (tmp_path / "t" / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="^out"):
        run_trial(tiny_config(**{"optimization.iterations": 5, "optimization.lr_g": 1e-3}), tmp_path / "t")
    assert (tmp_path / "t" / "metrics.jsonl").read_bytes() == before


@dataclass
class _NanParams:
    after: int = 7


class _NanLoss(Loss):
    """Hinge loss that turns NaN once the trial passes ``after`` D steps."""

    def __init__(self, params):
        super().__init__(params)
        self.calls = 0

    def d_loss(self, real_logits, fake_logits):
        self.calls += 1
        value = torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
        return value * float("nan") if self.calls > self.params.after else value

    def g_loss(self, fake_logits):
        return -fake_logits.mean()


class _Exploding(Augment):
    def forward(self, images):
        raise RuntimeError("augmentation exploded")


@pytest.fixture
def test_variants():
    LOSSES.register("test_nan", params=_NanParams)(_NanLoss)
    AUGMENTS.register("test_explode")(_Exploding)
    yield
    LOSSES.unregister("test_nan")
    AUGMENTS.unregister("test_explode")


def test_divergence_is_recorded_not_raised(tmp_path, test_variants):
    cfg = tiny_config(**{"loss.name": "test_nan", "loss.kwargs": {"after": 7}})
    result = run_trial(cfg, tmp_path / "t")
    status = TrialRecord(tmp_path / "t").status()
    assert result.status == "diverged" and status["status"] == "diverged"
    assert status["iteration"] == 7 and "iteration 8" in status["error"] and "d_loss" in status["error"]
    # a diverged trial is final: rerunning does not retry it
    assert run_trial(cfg, tmp_path / "t").status == "diverged"


def test_exception_is_recorded_as_failed(tmp_path, test_variants):
    cfg = tiny_config(**{"augment.policy": "test_explode"})
    with pytest.raises(RuntimeError, match="exploded"):
        run_trial(cfg, tmp_path / "t")
    status = TrialRecord(tmp_path / "t").status()
    assert status["status"] == "failed" and "exploded" in status["error"] and status["iteration"] == 0


def test_cli_trial_runs_and_resumes(tmp_path, capsys):
    from harness.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(**{"optimization.iterations": 10})))
    assert main(["trial", str(cfg), "--out", str(tmp_path / "t"), "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "completed" and out["iteration"] == 10
    # rerunning a completed trial returns at once with the same answer
    assert main(["trial", str(cfg), "--out", str(tmp_path / "t"), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["iteration"] == 10
    # a config error exits 2 and names the field, before anything is written
    assert main(["trial", str(cfg), "--out", str(tmp_path / "u"), "--set", "optimization.d_steps=0"]) == 2
    assert "optimization.d_steps" in capsys.readouterr().err
    assert not (tmp_path / "u").exists()
