"""Feature metrics: parity with pytorch-fid and torch-fidelity, verified weights, sanity."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.metrics import evaluate
from harness.metrics import extractors as ex
from harness.metrics.stats import (GaussianStats, density_coverage, frechet_distance, inception_score,
                                   kernel_inception_distance, precision_recall)
from harness.interfaces import EvalContext


@pytest.mark.parametrize("d,n", [(64, 500), (64, 40), (2048, 500), (2048, 2100)],
                         ids=["d64-full-rank", "d64-n<d", "d2048-n<d", "d2048-full-rank"])
def test_frechet_distance_parity(d, n):
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(d + n)
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) * 1.1 + 0.05
    sa, sb = GaussianStats.of(a), GaussianStats.of(b)
    ours = frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    pfid = calculate_frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    tfid = fid_statistics_to_metric({"mu": sa.mu, "sigma": sa.sigma}, {"mu": sb.mu, "sigma": sb.sigma},
                                    False)["frechet_inception_distance"]
    assert ours == pytest.approx(pfid, rel=1e-6)
    assert ours == pytest.approx(tfid, rel=1e-6)


def test_frechet_distance_of_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    s = GaussianStats.of(rng.normal(size=(300, 32)))
    assert abs(frechet_distance(s.mu, s.sigma, s.mu, s.sigma)) < 1e-8


def test_kid_precision_recall_density_coverage():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(100, 16))
    same = rng.normal(size=(100, 16))
    shifted = rng.normal(size=(100, 16)) + 3.0
    kid_same = kernel_inception_distance(real, same, subsets=50)
    kid_shift = kernel_inception_distance(real, shifted, subsets=50)
    assert abs(kid_same["kid"]) < 0.05 and kid_shift["kid"] > 1.0
    assert kid_same["kid_subset_size"] == 100  # subsets fit a 100-image reference set
    identical = {**precision_recall(real, real), **density_coverage(real, real)}
    assert identical["precision"] == identical["recall"] == identical["coverage"] == 1.0
    far = {**precision_recall(real, shifted), **density_coverage(real, shifted)}
    assert far["precision"] < 0.2 and far["recall"] < 0.2 and far["coverage"] < 0.2


def test_inception_pipelines_match_the_libraries(stand_in_inception):
    from pytorch_fid.inception import InceptionV3 as PytorchFidInception
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    torch.manual_seed(1)
    imgs = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    x = imgs.float() / 127.5 - 1  # ganbench's [-1, 1] images; quantised back to these uint8 exactly
    # the pipelines on torch eager (bit-exact with pytorch-fid); ONNX Runtime checked below
    ours_legacy = ex.InceptionV3(torch.device("cpu"), "legacy_pytorch", backend="torch").features(x)
    ours_tf = ex.InceptionV3(torch.device("cpu"), "tf_compat", backend="torch").features(x)
    onnx_legacy = ex.InceptionV3(torch.device("cpu"), "legacy_pytorch", backend="onnxruntime")
    assert onnx_legacy.backend == "onnxruntime"
    with torch.no_grad():
        pfid = PytorchFidInception([3]).eval()(imgs.float() / 255)[0].flatten(1).double().numpy()
        tfe = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(stand_in_inception)).eval()
        tfid = tfe(imgs)[0].double().numpy()
    assert np.abs(ours_legacy - pfid).max() <= 1e-6  # bit-exact here
    assert np.abs(onnx_legacy.features(x) - pfid).max() <= 1e-4  # the export's own check bound
    assert np.abs(ours_tf - tfid).max() <= 1e-5  # float32 rounding of the TF-exact resize
    assert np.abs(pfid).max() > 0.01


def test_wrong_inception_weights_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / ex.INCEPTION_FILE
    bad.write_bytes(b"\0" * 1024)
    monkeypatch.setenv("GANBENCH_INCEPTION_WEIGHTS", str(bad))
    with pytest.raises(ex.WeightsError, match="refusing to load"):
        ex.InceptionV3(torch.device("cpu"))
    monkeypatch.setattr(ex, "INCEPTION_BYTES", 1024)
    with pytest.raises(ex.WeightsError, match="SHA-256 .* expected 6726825d"):
        ex.InceptionV3(torch.device("cpu"))


def test_missing_inception_weights_say_how_to_supply_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANBENCH_INCEPTION_WEIGHTS", raising=False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ex.WeightsError) as info:
        ex.InceptionV3(torch.device("cpu"))
    message = str(info.value)
    assert "GANBENCH_INCEPTION_WEIGHTS" in message and "6726825d0af5" in message and "fd_effnet" in message


def test_effnet_weights_are_verified(monkeypatch):
    monkeypatch.setattr(ex, "EFFNET_SHA256", "0" * 64)
    with pytest.raises(ex.WeightsError, match="refusing to load"):
        ex.EfficientNetLite0(torch.device("cpu"))


def _lfw():
    from harness.data.catalog import build_dataset

    return torch.from_numpy(build_dataset("lfw-faces", 32)[1].images.copy()).float().div(127.5).sub(1)


def _context(real, fake):
    def generate(n):
        for i in range(0, n, 25):
            yield fake[i:i + 25]

    return EvalContext(real=real, generate=generate, n_fake=len(fake), device=torch.device("cpu"), seed=0,
                       dataset_fingerprint="", cache={})


def test_fd_effnet_ranks_real_data_sensibly():
    faces = _lfw()
    real, other = faces[:50], faces[50:]
    blurred = F.avg_pool2d(other, 5, stride=1, padding=2, count_include_pad=False)
    noise = torch.rand_like(other) * 2 - 1
    scores = {name: evaluate(["fd_effnet", "kid_effnet"], _context(real, fake))["values"]
              for name, fake in [("other half", other), ("blurred", blurred), ("noise", noise)]}
    fd = {k: v["fd_effnet"] for k, v in scores.items()}
    assert fd["other half"] < fd["blurred"] < fd["noise"], fd
    kid = {k: v["kid_effnet"] for k, v in scores.items()}
    assert kid["other half"] < kid["blurred"] < kid["noise"], kid


def test_inception_score_bounds():
    # Constant predictions: 1. Confident predictions spread evenly over k classes: k.
    assert inception_score(np.zeros((40, 1000)))["is"] == pytest.approx(1.0)
    confident = np.tile(30.0 * np.eye(8), (10, 1))  # 80 samples, 8 classes, 10 each
    one = inception_score(confident, splits=1)
    assert one["is"] == pytest.approx(8.0, rel=1e-6) and one["splits"] == 1
    # 10 splits of 8 consecutive rows: each split again holds all 8 classes once.
    ten = inception_score(confident, splits=10)
    assert ten["is"] == pytest.approx(8.0, rel=1e-6) and ten["is_std"] < 1e-9
    assert inception_score(np.zeros((3, 5)))["splits"] == 3  # fewer samples than splits
    with pytest.raises(ValueError):
        inception_score(np.zeros((0, 5)))


def test_is_effnet_prefers_varied_images():
    faces = _lfw()
    varied = torch.cat([faces[:40], torch.rand(20, 3, 32, 32) * 2 - 1,
                        F.interpolate(faces[40:60].flip(3), size=(32, 32))])
    collapsed = faces[:1].repeat(60, 1, 1, 1)
    out = {name: evaluate(["is_effnet"], _context(faces, imgs)) for name, imgs in
           [("varied", varied), ("collapsed", collapsed)]}
    assert out["collapsed"]["values"]["is_effnet"] == pytest.approx(1.0, abs=1e-6)  # one image: no spread
    assert out["varied"]["values"]["is_effnet"] > 1.2  # faces sit in few ImageNet classes; 1.30 measured
    assert out["varied"]["higher_is_better"]["is_effnet"] is True
    assert out["varied"]["protocol"]["is_effnet"]["splits"] == 10


def test_feature_metrics_in_a_trial(tmp_path, isolated_cache):
    from harness.store import TrialRecord
    from harness.trial import run_trial
    from tests.conftest import tiny_config

    cfg = tiny_config(**{"eval.metrics": ["fd_effnet", "kid_effnet", "prdc_effnet"], "eval.n_samples": 20,
                         "eval.every": 5, "optimization.iterations": 10, "dataset.kwargs": {"count": 30}})
    run_trial(cfg, tmp_path / "t")
    evals = [r for r in TrialRecord(tmp_path / "t").reports() if "metrics" in r]
    assert [r["iteration"] for r in evals] == [5, 10]
    m = evals[-1]["metrics"]
    assert np.isfinite(m["fd_effnet"]) and m["fd_effnet"] > 0
    assert 0 <= m["precision_effnet"] <= 1 and 0 <= m["coverage_effnet"] <= 1
    proto = evals[-1]["protocol"]["fd_effnet"]
    assert proto["weights_sha256"] == ex.EFFNET_SHA256 and proto["pipeline"] == "bilinear224"
    assert proto["n_fake"] == 20 and proto["n_real"] == 30
    # real features were computed once and cached on disk for other trials
    assert len(list((isolated_cache / "stats").glob("*efficientnet-lite0*.npy"))) == 1
    # higher-is-better metrics keep their maximum as best
    assert evals[-1]["best"]["coverage_effnet"] == max(r["metrics"]["coverage_effnet"] for r in evals)


def test_cli_metric_on_a_trial_and_a_dataset(tmp_path, capsys):
    import json

    from harness.cli import main
    from harness.trial import run_trial
    from tests.conftest import tiny_config

    run_trial(tiny_config(**{"optimization.iterations": 5, "dataset.kwargs": {}}), tmp_path / "t")
    assert main(["data", "build", "lfw-faces", "--resolution", "16"]) == 0
    capsys.readouterr()
    assert main(["metric", "--real", "lfw-faces", "--fake", str(tmp_path / "t"), "--metrics", "swd,kid_effnet",
                 "--n", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fake"]["kind"] == "generator" and out["fake"]["iteration"] == 5 and out["fake"]["n"] == 20
    assert out["real"]["n"] == 100 and np.isfinite(out["values"]["kid_effnet"])
    assert out["protocol"]["kid_effnet"]["weights_sha256"] == ex.EFFNET_SHA256
    ckpt = sorted((tmp_path / "t" / "checkpoints").glob("*.pt"))[-1]
    assert main(["metric", "--real", "lfw-faces", "--fake", str(ckpt), "--metrics", "swd", "--n", "20"]) == 0
    assert "swd" in capsys.readouterr().out
    assert main(["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--metrics", "swd"]) == 0
    capsys.readouterr()
    assert main(["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--metrics", "fid_magic"]) == 2
    assert "--metrics[0]" in capsys.readouterr().err
    assert main(["metric", "--real", "lfw-faces", "--fake", str(tmp_path / "missing"), "--metrics", "swd"]) == 2
    assert "--fake" in capsys.readouterr().err


def test_missing_fid_weights_fail_before_training(tmp_path, monkeypatch):
    from harness.cli import main
    from tests.conftest import tiny_config
    import yaml

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("GANBENCH_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(**{"eval.metrics": ["fid"]})))
    assert main(["trial", str(cfg), "--out", str(tmp_path / "t"), "--quiet"]) == 2
    assert not (tmp_path / "t" / "metrics.jsonl").exists()  # nothing trained
