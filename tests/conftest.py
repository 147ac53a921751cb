import copy
import os

import pytest
import torch

# Tests are single-threaded and deterministic; keep BLAS/OpenMP from oversubscribing.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY = {
    "name": "tiny",
    "dataset": {"name": "shapes", "resolution": 16, "channels": 3, "kwargs": {"count": 64}},
    "architecture": {"name": "dcgan", "kwargs": {"width": 8, "z_dim": 16}},
    "loss": {"name": "hinge"},
    "optimization": {"batch_size": 8, "iterations": 20},
    "ema": {"decay": 0.9},
    "eval": {"every": 10, "n_samples": 32, "batch_size": 16, "metrics": []},
    "log_every": 5,
    "checkpoint_every": 10,
    "sample_every": 10,
    "seed": 1,
    "device": "cpu",
    "threads": 1,
}

# Small widths per architecture so every architecture trains in seconds at 16 px.
TINY_ARCH_KWARGS = {
    "dcgan": {"width": 8, "z_dim": 16},
    "resnet": {"width": 16, "z_dim": 16},
    "biggan": {"width": 4, "z_dim": 12, "shared_dim": 8, "attention": 8},
    "progressive": {"width": 16, "z_dim": 16, "start_resolution": 8, "stage_iterations": 6, "fade_iterations": 6},
}


# Datasets a shipped preset names but ganbench cannot build: the user imports them (the
# README says how); tests import small stand-ins under those names.
USER_IMPORTED = {"obama-100": 256, "grumpy-cat-100": 256, "panda-100": 256}


def import_stand_ins(folder, names=tuple(USER_IMPORTED)):
    """Import two plain images as each of ``names`` into the (test's) dataset cache."""
    from PIL import Image

    from harness.data.catalog import import_folder

    for i, name in enumerate(names):
        images = folder / f"stand-in-{name}"
        images.mkdir(parents=True, exist_ok=True)
        for k in range(2):
            Image.new("RGB", (USER_IMPORTED[name],) * 2, (30 * k, 60 * i, 200)).save(images / f"{k}.png")
        import_folder(images, name, USER_IMPORTED[name])


def tiny_config(**overrides):
    cfg = copy.deepcopy(TINY)
    for dotted, value in overrides.items():
        node = cfg
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = copy.deepcopy(value)
    return cfg


@pytest.fixture
def tiny():
    return tiny_config


@pytest.fixture(scope="session")
def _session_extractors(tmp_path_factory):
    return tmp_path_factory.mktemp("extractors")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch, _session_extractors):
    """Every test gets an empty dataset/download cache: no leftovers of this machine. The
    ONNX exports of the feature extractors (cache/extractors, ~10 s each to make) are
    shared by the session's tests; tests of that cache itself replace the link."""
    cache = tmp_path / "ganbench-cache"
    cache.mkdir()
    (cache / "extractors").symlink_to(_session_extractors, target_is_directory=True)
    monkeypatch.setenv("GANBENCH_CACHE", str(cache))
    return cache


@pytest.fixture
def stand_in_inception(tmp_path, monkeypatch):
    """A random FID-Inception state dict where pytorch-fid looks (the torch hub cache),
    accepted by ganbench only because the test swaps in its hash."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANBENCH_INCEPTION_WEIGHTS", raising=False)
    torch.manual_seed(0)
    from harness.metrics import extractors as ex

    net = ex._fid_inception_network()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.running_mean.normal_(0, 0.1)
    path = tmp_path / "torch" / "hub" / "checkpoints" / ex.INCEPTION_FILE
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    monkeypatch.setattr(ex, "INCEPTION_SHA256", ex.sha256_file(path))
    monkeypatch.setattr(ex, "INCEPTION_BYTES", path.stat().st_size)
    return path


@pytest.fixture(scope="session")
def _source_model(tmp_path_factory):
    """A tiny dcgan source model (16 px shapes, 20 iterations) exported to a zoo once."""
    from harness import zoo
    from harness.trial import run_trial

    root = tmp_path_factory.mktemp("zoo-source")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANBENCH_CACHE", str(root / "cache"))
        cfg = tiny_config(**{"eval.every": 0, "sample_every": 0, "name": "source"})
        run_trial(cfg, root / "trial")
        zoo.export(root / "trial", "tiny-src", zoo=root / "zoo")
    return root / "zoo"


@pytest.fixture
def source_zoo(_source_model, monkeypatch):
    """GANBENCH_ZOO pointing at a zoo holding ``tiny-src`` (the TINY architecture)."""
    monkeypatch.setenv("GANBENCH_ZOO", str(_source_model))
    return _source_model


def run_study_inline(study_data, results, only=None):
    """Run a grid study's trials in this process into the layout the Ray runner writes
    (study.yaml, plan.json, trials/<id>/ + study_trial.json, summary): for tests of what
    reads study results, without starting Ray. ``only``: the trial ids to run (others stay
    pending, as in a study still running)."""
    from harness.runner import StudyRunner
    from harness.study import parse_study
    from harness.summary import write_summary
    from harness.trial import run_trial

    study = parse_study(study_data)
    runner = StudyRunner(study, results, out=lambda line: None)
    runner.prepare()
    for p in runner.plans:
        if only is not None and p.trial_id not in only:
            continue
        rec = runner.record.trial(p.trial_id).root
        rec.mkdir(parents=True, exist_ok=True)
        runner.record.write_trial_info(p.trial_id, {"trial_id": p.trial_id, "phase": p.phase, "labels": p.labels,
                                                    "overrides": p.overrides})
        runner.record.append_attempt(p.trial_id, {"pid": os.getpid()})
        run_trial(p.spec, rec)
    write_summary(runner.root)
    return runner.root


@pytest.fixture(scope="session")
def _local_s3():
    from tests.s3server import LocalS3

    server = LocalS3()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(_local_s3, monkeypatch):
    """A fresh bucket on the local S3 server (moto, 127.0.0.1), with the standard AWS
    variables pointing at it (inherited by any Ray this test starts); its name."""
    for key, value in _local_s3.env().items():
        monkeypatch.setenv(key, value)
    return _local_s3.new_bucket()
