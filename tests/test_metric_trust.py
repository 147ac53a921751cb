"""Metrics a few-shot study can trust: preprocessing parity with the reference libraries on
real images, tie rules, small sets, subsets, protocols, objectives, memorisation, floors."""
import json

import numpy as np
import pytest
import torch

from harness.errors import ConfigError
from harness.interfaces import EvalContext
from harness.metrics import evaluate, value_keys
from harness.metrics import extractors as ex
from harness.metrics.stats import density_coverage, memorization, precision_recall
from tests.conftest import tiny_config


def _real_uint8(resolution: int, count: int = 6) -> torch.Tensor:
    """Real photographs (lfw-faces, built offline) as uint8 N x 3 x R x R; resolutions the
    dataset is not built at are made with PIL from its 64 px images (real content either way)."""
    from PIL import Image

    from harness.data.catalog import build_dataset

    images = build_dataset("lfw-faces", 64)[1].images[:count, :3]
    if resolution != 64:
        images = np.stack([np.asarray(Image.fromarray(im.transpose(1, 2, 0)).resize((resolution, resolution),
                                                                                Image.LANCZOS)).transpose(2, 0, 1)
                           for im in images])
    return torch.from_numpy(np.ascontiguousarray(images))


def _first_conv_input(module: torch.nn.Module, conv: torch.nn.Module, *args) -> torch.Tensor:
    """What ``module(*args)`` feeds its first convolution: the library's own preprocessing."""
    seen = []
    handle = conv.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    try:
        with torch.no_grad():
            module(*args)
    finally:
        handle.remove()
    return seen[0]


RESOLUTIONS = [32, 64, 400]  # upsampling twice, and a downsampling case where antialiasing matters


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_legacy_pytorch_input_is_pytorch_fids_own(stand_in_inception, resolution):
    """Catches: a resize other than PyTorch bilinear (align_corners=False), a normalisation
    other than 2x - 1 (even 0.5/128 off), a resize of unquantised floats."""
    from pytorch_fid.inception import InceptionV3 as PytorchFidInception

    imgs = _real_uint8(resolution)
    ref_net = PytorchFidInception([3]).eval()
    theirs = _first_conv_input(ref_net, ref_net.blocks[0][0], imgs.float() / 255)
    ours = ex.InceptionV3(torch.device("cpu"), "legacy_pytorch", backend="torch").preprocess(imgs)
    assert ours.shape == theirs.shape == (len(imgs), 3, 299, 299)
    assert torch.equal(ours, theirs)  # bit-exact


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_tf_compat_input_is_torch_fidelitys_own(stand_in_inception, resolution):
    """Catches: PyTorch's bilinear instead of TF1's (measured: 10-60 grey levels apart at
    32 px), a normalisation off by 0.5/128, align_corners."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    imgs = _real_uint8(resolution)
    ref_net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(stand_in_inception)).eval()
    theirs = _first_conv_input(ref_net, ref_net.Conv2d_1a_3x3, imgs)
    ours = ex.InceptionV3(torch.device("cpu"), "tf_compat", backend="torch").preprocess(imgs)
    assert ours.shape == theirs.shape
    # float32 interpolation in a different order: within 1e-4 grey levels (x 128 in their units)
    assert (ours - theirs).abs().max().item() * 128 <= 1e-3


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_clean_input_is_clean_fids_own(resolution):
    """clean-fid's own resizer (``build_resizer('clean')``, PIL bicubic on float32 channels)
    and its model's normalisation (x - 128) / 128. Catches: torch bicubic (with or without
    antialias), a quantised resize, a normalisation off by 0.5/128."""
    from cleanfid.resize import build_resizer

    imgs = _real_uint8(resolution)
    resize = build_resizer("clean")
    theirs = torch.stack([torch.from_numpy(resize(im.permute(1, 2, 0).numpy()).transpose(2, 0, 1).copy())
                          for im in imgs])
    theirs = (theirs - 128) / 128
    ours = ex.pil_bicubic(imgs, 299)
    ours = (ours - 128) / 128
    assert torch.equal(ours, theirs)
    # and the extractor runs exactly that
    extractor = ex.InceptionV3.__new__(ex.InceptionV3)
    extractor.pipeline = "clean"
    assert torch.equal(extractor.preprocess(imgs), theirs)


def test_fid_clean_runs_end_to_end(stand_in_inception):
    imgs = _real_uint8(32, 8).float() / 127.5 - 1
    out = evaluate(["fid_clean"], _ctx(imgs[:4], imgs[4:]))
    assert out["protocol"]["fid_clean"]["pipeline"] == "clean" and np.isfinite(out["values"]["fid_clean"])


# ------------------------------------------------------------------ PR/DC against prdc
def test_density_and_coverage_match_the_prdc_package():
    from prdc import compute_prdc

    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(80, 12)), rng.normal(size=(70, 12)) * 1.2 + 0.1
    theirs = compute_prdc(real, fake, nearest_k=5)
    ours = {**precision_recall(real, fake, k=5), **density_coverage(real, fake, k=5)}
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key
    # a set against itself: every real point's k-th neighbour lies on its sphere: density 1, not (k+1)/k
    same = compute_prdc(real, real, nearest_k=5)
    ours_same = density_coverage(real, real, k=5)
    assert ours_same["density"] == pytest.approx(1.0) == pytest.approx(same["density"])
    assert ours_same["coverage"] == 1.0


def test_precision_recall_refuse_sets_of_k_or_fewer():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"precision/recall with k=3 needs more than 3 fake samples, got 3"):
        precision_recall(rng.normal(size=(20, 4)), rng.normal(size=(3, 4)), k=3)
    with pytest.raises(ValueError, match="more than 5 real samples"):
        density_coverage(rng.normal(size=(5, 4)), rng.normal(size=(30, 4)), k=5)
    assert precision_recall(rng.normal(size=(20, 4)), rng.normal(size=(4, 4)), k=3)["precision"] >= 0


def _ctx(real, fake, **kw):
    def generate(n):
        for i in range(0, n, 25):
            yield fake[i:min(i + 25, n)]

    return EvalContext(real=real, generate=generate, n_fake=len(fake), device=torch.device("cpu"), seed=0,
                       dataset_fingerprint="", cache={}, **kw)


def test_too_few_images_are_refused_before_any_computation(monkeypatch):
    from harness.metrics import feature_metrics

    def must_not_run(*a, **k):
        raise AssertionError("features were computed")

    monkeypatch.setattr(feature_metrics, "fake_features", must_not_run)
    monkeypatch.setattr(feature_metrics, "real_features", must_not_run)
    real = torch.rand(30, 3, 16, 16) * 2 - 1
    with pytest.raises(ConfigError, match=r"eval.n_samples: got 3; expected at least 4 generated images for "
                                          r"prdc_effnet \(.*k_precision_recall = 3"):
        evaluate(["swd", "prdc_effnet"], _ctx(real, real[:3]))
    with pytest.raises(ConfigError, match=r"at least 50 real images for kid_effnet \(kid_effnet subset_size = 50"):
        evaluate(["kid_effnet"], _ctx(real, torch.cat([real, real]), options={"kid_effnet": {"subset_size": 50}}))


# ------------------------------------------------------------------ spec: options and sizes
def test_metric_options_are_validated_and_recorded():
    from harness.spec import parse_trial

    ok = parse_trial(tiny_config(**{"eval.metrics": ["kid_effnet", "prdc_effnet"], "eval.n_samples": 40,
                                    "eval.metric_options": {"kid_effnet": {"subset_size": 20, "subsets": 10},
                                                            "prdc_effnet": {"k_precision_recall": 5}}}))
    assert ok.eval.metric_options["kid_effnet"]["subset_size"] == 20
    bad = [({"eval.metric_options": {"kid_effnet": {"subset": 20}}, "eval.metrics": ["kid_effnet"]},
            r"eval.metric_options.kid_effnet"),
           ({"eval.metric_options": {"fd_effnet": {"x": 1}}, "eval.metrics": ["fd_effnet"]},
            r"takes none"),
           ({"eval.metric_options": {"kid_effnet": {}}, "eval.metrics": ["swd"]},
            r"eval.metric_options: got 'kid_effnet'; expected options of a metric in eval.metrics \(swd\)"),
           ({"eval.metric_options": {"kid_effnet": {"subset_size": 600}}, "eval.metrics": ["kid_effnet"]},
            r"eval.n_samples: got 32; expected at least 600 generated images for kid_effnet"),
           ({"eval.metrics": ["prdc_effnet"], "eval.n_samples": 3}, r"eval.n_samples: got 3; expected at least 4")]
    for change, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_trial(tiny_config(**change))


def test_options_and_truncation_are_part_of_the_protocol():
    real = torch.rand(40, 3, 16, 16) * 2 - 1
    fake = torch.rand(40, 3, 16, 16) * 2 - 1
    plain = evaluate(["swd", "kid_effnet"], _ctx(real, fake))
    truncated = evaluate(["swd", "kid_effnet"], _ctx(real, fake, truncation=0.5, options={"kid_effnet": {"subset_size": 10}}))
    assert plain["protocol"]["swd"]["truncation"] is None and truncated["protocol"]["swd"]["truncation"] == 0.5
    assert truncated["protocol"]["kid_effnet"]["kid_subset_size"] == 10
    assert plain["protocol"]["kid_effnet"]["kid_subset_size"] == 40
    assert plain["metric_of"] == {"swd": "swd", "kid_effnet": "kid_effnet", "kid_effnet_std": "kid_effnet"}


def test_tables_refuse_to_pool_truncated_and_untruncated_values():
    import pandas as pd

    from harness.analysis.tables import check_protocol

    base = {"n_fake": 500, "seed": 0, "extractor": "efficientnet-lite0"}
    frame = pd.DataFrame([
        {"trial_id": "a", "protocol.prdc_effnet": json.dumps({**base, "truncation": None}),
         "metric.precision_effnet": "prdc_effnet"},
        {"trial_id": "b", "protocol.prdc_effnet": json.dumps({**base, "truncation": 0.7}),
         "metric.precision_effnet": "prdc_effnet"}])
    # a value key of a metric with several keys finds its metric's protocol through metric.<key>
    with pytest.raises(ConfigError, match="truncation"):
        check_protocol(frame, "precision_effnet")
    assert check_protocol(frame.iloc[:1], "precision_effnet")["truncation"] is None


# ------------------------------------------------------------------ keys, directions, objectives
def test_every_key_carries_its_metric_and_direction():
    keys = value_keys(["prdc_effnet", "memorization_effnet", "kid_effnet", "is_effnet"])
    assert keys["precision_effnet"] == {"metric": "prdc_effnet", "higher_is_better": True}
    assert keys["memorization_effnet"]["higher_is_better"] is False and keys["nn_ratio_effnet"]["higher_is_better"]
    assert keys["kid_effnet_std"] == {"metric": "kid_effnet", "higher_is_better": False}
    assert keys["is_effnet"]["higher_is_better"] is True and keys["is_effnet_std"]["higher_is_better"] is False


def _search_study(metric, metrics):
    base = tiny_config(**{"eval.metrics": metrics, "optimization.iterations": 40})
    return {"name": "s", "base": base, "search": {"metric": metric, "n_trials": 2, "space": {
        "optimization.lr_g": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}}}}


def test_the_search_objective_names_a_reported_key():
    from harness.study import parse_study
    from harness.study.planning import Plan, base_spec
    from harness.study.search import objective_key

    with pytest.raises(ConfigError, match=r"search.metric: got 'prdc_effnet'; expected one value key of "
                                          r"prdc_effnet, which reports 4: precision_effnet, recall_effnet"):
        parse_study(_search_study("prdc_effnet", ["swd", "prdc_effnet"]))
    for metric, key, mode in [("precision_effnet", "precision_effnet", "max"), ("swd", "swd", "min"),
                              ("fd_effnet", "fd_effnet", "min"), ("nn_ratio_effnet", "nn_ratio_effnet", "max")]:
        study = parse_study(_search_study(metric, ["swd", "fd_effnet", "prdc_effnet", "memorization_effnet"]))
        assert objective_key(metric, base_spec(study)) == (key, mode == "max")
        plan = Plan.of(study)
        assert (plan.metric, plan.mode) == (key, mode)


def test_a_search_on_a_multi_key_metric_is_refused_by_the_cli(tmp_path, capsys):
    import yaml

    from harness.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_search_study("prdc_effnet", ["prdc_effnet"])))
    assert main(["run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "search.metric" in capsys.readouterr().err and not (tmp_path / "r" / "s").exists()


def test_analysis_reads_directions_from_rows_not_names():
    import pandas as pd

    from harness.analysis.results import metric_direction

    frame = pd.DataFrame([{"direction.nn_ratio_effnet": "max", "direction.memorization_effnet": "min"}])
    assert metric_direction("nn_ratio_effnet", frame) == "max"
    assert metric_direction("memorization_effnet", frame) == "min"


# ------------------------------------------------------------------ memorisation
def test_memorization_statistics():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 16))
    copies = real[rng.integers(0, 60, 50)] + rng.normal(size=(50, 16)) * 1e-3
    new = rng.normal(size=(50, 16))
    c, n = memorization(real, copies), memorization(real, new)
    assert c["fraction"] == 1.0 and c["median_ratio"] < 0.01 and c["penalty"] > 100
    assert n["fraction"] < 0.1 and 0.7 < n["median_ratio"] < 2.0 and n["penalty"] == 1.0
    # half copies, half new
    half = memorization(real, np.concatenate([copies[:25], new[:25]]))
    assert half["fraction"] == pytest.approx(0.5, abs=0.05)
    # a duplicated training image: a fake exactly on it is a copy, not a 0/0
    twin = np.concatenate([real, real[:1]])
    assert memorization(twin, real[:1])["fraction"] == 1.0


def _train(tmp_path, iterations):
    from harness.data.catalog import build_dataset
    from harness.trial import run_trial

    build_dataset("lfw-faces", 16)

    cfg = tiny_config(**{"dataset.name": "lfw-faces", "dataset.resolution": 16, "dataset.kwargs": {},
                         "optimization.iterations": iterations, "eval.every": iterations,
                         "eval.n_samples": 100, "eval.metrics": ["memorization_effnet", "fd_effnet"]})
    run_trial(cfg, tmp_path)
    return cfg


def test_memorization_flags_a_copying_generator_not_a_trained_one(tmp_path):
    from harness.data.catalog import build_dataset
    from harness.store import TrialRecord

    _train(tmp_path / "g", 150)
    rows = [r for r in TrialRecord(tmp_path / "g").reports() if "metrics" in r]
    trained = rows[-1]["metrics"]
    assert trained["memorization_effnet"] <= 0.05, trained
    assert rows[-1]["metric_of"]["mifid_effnet"] == "memorization_effnet"
    assert rows[-1]["higher_is_better"]["nn_ratio_effnet"] is True
    # the closest pairs were written for the report
    pairs = TrialRecord(tmp_path / "g").pair_grids("effnet")
    assert len(pairs) == 1 and rows[-1]["nearest_pairs"]["nearest_pairs.effnet"] == pairs[0].name

    # Training images plus tiny noise (sigma 0.64 grey levels). Feature-space distances are
    # noise-sensitive: at sigma 1.3 levels 93 % of these copies are flagged, at 2.5 levels
    # 39 % (emoji-faces, 32 px; measured), which docs/metrics.md states.
    real = torch.from_numpy(build_dataset("emoji-faces", 32)[1].images.copy())[:, :3].float().div(127.5).sub(1)
    gen = torch.Generator().manual_seed(1)
    copies = (real[torch.randint(0, len(real), (100,), generator=gen)]
              + 0.005 * torch.randn(100, 3, 32, 32, generator=gen)).clamp(-1, 1)
    copied = evaluate(["memorization_effnet", "fd_effnet"], _ctx(real, copies))["values"]
    assert copied["memorization_effnet"] >= 0.9, copied
    assert copied["mifid_effnet"] > 10 * copied["fd_effnet"]  # the penalty bites
    assert copied["fd_effnet"] < trained["fd_effnet"]  # which plain FD rewards


# ------------------------------------------------------------------ the CLI: subsets, floors, self
def test_a_dataset_as_fake_is_a_random_subset(capsys):
    from harness.cli import main
    from harness.metrics.standalone import _random_subset

    images = torch.arange(100).float().view(100, 1, 1, 1)
    picked = _random_subset(images, 20, seed=0).flatten()
    assert len(set(picked.tolist())) == 20 and picked.max() >= 50  # not the first 20
    assert torch.equal(picked, _random_subset(images, 20, seed=0).flatten())  # seeded
    assert main(["data", "build", "lfw-faces", "--resolution", "16"]) == 0
    capsys.readouterr()
    assert main(["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--metrics", "swd", "--n", "20",
                 "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["fake"]["subset"] == "random 20 (seed 0)" and out["fake"]["n"] == 20
    assert "compares a set with itself" in captured.err and "--split" in captured.err
    assert set(out) >= {"values", "protocol", "higher_is_better"} and isinstance(out["values"]["swd"], float)


def test_split_prints_the_real_vs_real_floor(capsys, isolated_cache):
    from harness.cli import main

    assert main(["data", "build", "lfw-faces", "--resolution", "16"]) == 0
    capsys.readouterr()
    assert main(["metric", "--real", "lfw-faces", "--split", "--splits", "3", "--metrics", "swd,fd_effnet",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # two different halves: a set against itself would read 0 (up to rounding)
    assert min(out["floor"]["fd_effnet"]["values"]) > 1.0
    assert out["n"] == 50 and out["splits"] == 3
    assert len(out["floor"]["swd"]["values"]) == 3 and out["values"]["swd"] == pytest.approx(
        np.mean(out["floor"]["swd"]["values"]))
    assert out["floor"]["swd"]["std"] > 0  # different splits, different values
    assert out["protocol"]["swd"]["floor"] == {"splits": 3, "n": 50, "reference_half": 50, "seed": 0}
    assert list(isolated_cache.glob("floors/*.json"))  # cached per dataset and protocol
    assert main(["metric", "--real", "lfw-faces", "--split", "--splits", "3", "--metrics", "swd"]) == 0
    assert "real-vs-real floor" in capsys.readouterr().out
    assert main(["metric", "--real", "lfw-faces", "--metrics", "swd"]) == 2
    assert "--split" in capsys.readouterr().err
    assert main(["metric", "--real", "lfw-faces", "--split", "--metrics", "prdc_effnet", "--n", "3"]) == 2
    assert "at least 4 generated images for prdc_effnet" in capsys.readouterr().err
    assert main(["metric", "--real", "lfw-faces", "--split", "--metrics", "swd", "--option",
                 "kid_effnet.subset_size=5"]) == 2
    assert "--option" in capsys.readouterr().err


def test_is_inception_matches_torch_fidelity(stand_in_inception, monkeypatch):
    """Catches: np.array_split parts instead of i*N//splits, no shuffle (seed 2020), the fc
    bias in the logits. (A random stand-in's pool3 features barely depend on the image, so
    the score itself is checked on varied logits, and the logits on real images.)"""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_isc import isc_features_to_metric

    from harness.metrics import feature_metrics
    from harness.metrics.stats import inception_score

    # the score: 25 samples (not a multiple of the 10 splits), logits that vary
    logits = torch.from_numpy(np.random.default_rng(0).normal(scale=3.0, size=(25, 1008)))
    theirs = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    ours = inception_score(logits.numpy(), splits=10, shuffle_seed=2020)
    assert ours["is"] == pytest.approx(theirs["inception_score_mean"], rel=1e-12)
    assert ours["is_std"] == pytest.approx(theirs["inception_score_std"], rel=1e-9)
    # the logits: pool3 features times fc.weight, no bias (a bias that matters)
    state = torch.load(stand_in_inception, weights_only=True)
    state["fc.bias"].uniform_(-5, 5)
    torch.save(state, stand_in_inception)
    monkeypatch.setattr(ex, "INCEPTION_SHA256", ex.sha256_file(stand_in_inception))
    monkeypatch.setattr(ex, "INCEPTION_BYTES", stand_in_inception.stat().st_size)
    monkeypatch.setattr(feature_metrics, "_EXTRACTORS", {})
    imgs = _real_uint8(32, 25)
    ref_net = FeatureExtractorInceptionV3("inception-v3-compat", ["logits_unbiased"],
                                          feature_extractor_weights_path=str(stand_in_inception)).eval()
    with torch.no_grad():
        their_logits = ref_net(imgs)[0].double().numpy()
    extractor = ex.InceptionV3(torch.device("cpu"), "tf_compat", backend="torch")
    our_logits = extractor.logits(extractor.features(imgs.float() / 127.5 - 1))
    assert np.abs(our_logits - their_logits).max() <= 1e-4
    x = imgs.float() / 127.5 - 1
    ctx = _ctx(x, x)
    ctx.feature_backend = "torch"
    out = evaluate(["is_inception"], ctx)
    assert out["values"]["is_inception"] == pytest.approx(isc_features_to_metric(
        torch.from_numpy(their_logits), splits=10, shuffle=True, rng_seed=2020)["inception_score_mean"], rel=1e-6)
    assert out["higher_is_better"]["is_inception"] is True
    assert out["protocol"]["is_inception"]["shuffle_seed"] == 2020


# ------------------------------------------------------------------ reference statistics (.npz)
def test_reference_stats_round_trip_and_foreign_layouts(tmp_path, capsys):
    from harness.cli import main

    assert main(["data", "build", "lfw-faces", "--resolution", "16"]) == 0
    stats = tmp_path / "lfw.npz"
    assert main(["metric", "--real", "lfw-faces", "--metrics", "fd_effnet", "--save-stats", str(stats)]) == 0
    capsys.readouterr()
    with np.load(stats, allow_pickle=False) as data:
        assert data["mu"].shape == (1280,) and data["sigma"].shape == (1280, 1280)
        assert str(data["pipeline"]) == "bilinear224" and str(data["n"]) == "100"
    # the same number from the statistics as from the images
    direct = ["metric", "--real", "lfw-faces", "--fake", "lfw-faces", "--n", "40", "--metrics", "fd_effnet", "--json"]
    via = ["metric", "--real", str(stats), "--fake", "lfw-faces", "--n", "40", "--metrics", "fd_effnet", "--json"]
    assert main(direct) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(via) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["values"]["fd_effnet"] == pytest.approx(a["values"]["fd_effnet"], rel=1e-9)
    assert b["protocol"]["fd_effnet"]["reference_pipeline"] == "verified" and b["real"]["n"] == 100
    # pytorch-fid's layout (mu, sigma only): accepted, marked unverified, with a warning
    with np.load(stats) as data:
        np.savez(tmp_path / "pfid.npz", mu=data["mu"], sigma=data["sigma"])
    assert main([*via[:2], str(tmp_path / "pfid.npz"), *via[3:]]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["protocol"]["fd_effnet"]["reference_pipeline"] == "unverified"
    assert "does not say which extractor" in captured.err
    # refused before any computation: wrong shape, dtype, another pipeline, a non-Fréchet metric
    with np.load(stats) as data:
        mu, sigma = data["mu"], data["sigma"]
    bad = {"shape.npz": dict(mu=mu[:10], sigma=sigma),
           "dtype.npz": dict(mu=mu.astype(np.int64), sigma=sigma),
           "other.npz": dict(mu=mu, sigma=sigma, extractor=np.array("efficientnet-lite0"),
                             pipeline=np.array("tf_compat"), weights_sha256=np.array(ex.EFFNET_SHA256)),
           "names.npz": dict(m=mu, s=sigma)}
    messages = {"shape.npz": r"\[mu\]: got \(10,\); expected shape \(1280,\) for fd_effnet",
                "dtype.npz": r"\[mu\]: got 'int64'; expected a float array",
                "other.npz": r"\[pipeline\]: got 'tf_compat'; expected bilinear224",
                "names.npz": r"expected arrays named mu and sigma"}
    for name, arrays in bad.items():
        np.savez(tmp_path / name, **arrays)
        assert main([*via[:2], str(tmp_path / name), *via[3:]]) == 2
        err = capsys.readouterr().err
        assert __import__("re").search(messages[name], err), err
    assert main(["metric", "--real", str(stats), "--fake", "lfw-faces", "--metrics", "kid_effnet"]) == 2
    assert "exactly one Fréchet distance metric" in capsys.readouterr().err


# ------------------------------------------------------------------ FD-infinity and the bootstrap
def test_fd_infinity_removes_the_small_n_bias():
    """Gaussian features whose true FD is 0: FD at n is biased upward ~ 1/n, FD∞ is not.
    Catches: the intercept replaced by the slope or the last point, fits in N instead of 1/N."""
    from harness.metrics.stats import GaussianStats, frechet_distance, frechet_infinity

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(4000, 16)), rng.normal(size=(1000, 16))
    r, f = GaussianStats.of(real), GaussianStats.of(fake)
    biased = frechet_distance(r.mu, r.sigma, f.mu, f.sigma)
    out = frechet_infinity(real, fake, points=15, min_fraction=0.1)
    assert biased > 0.03  # ~ d^2 / (2n) for d = 16 at n = 1000, plus the reference's own bias
    assert abs(out["fd_inf"]) < 0.3 * biased, (out["fd_inf"], biased)
    assert out["sizes"][0] == 100 and out["sizes"][-1] == 1000 and len(out["sizes"]) == 15
    # a real difference survives the extrapolation
    shifted = frechet_infinity(real, fake + 0.5, points=15)
    assert shifted["fd_inf"] == pytest.approx(16 * 0.25, rel=0.1)


def test_bootstrap_interval_brackets_the_value():
    from harness.metrics.stats import GaussianStats, bootstrap_frechet, frechet_distance

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 0.3
    r, f = GaussianStats.of(real), GaussianStats.of(fake)
    value = frechet_distance(r.mu, r.sigma, f.mu, f.sigma)
    out = bootstrap_frechet(real, fake, resamples=200, level=0.95)
    assert out["low"] < value < out["high"] and out["std"] > 0
    narrow = bootstrap_frechet(real, fake, resamples=200, level=0.5)
    assert out["low"] < narrow["low"] < narrow["high"] < out["high"]
    assert bootstrap_frechet(real, fake, resamples=50, seed=3) == bootstrap_frechet(real, fake, resamples=50, seed=3)


def test_opt_in_metrics_run_and_refuse_small_sets():
    real = torch.rand(40, 3, 16, 16) * 2 - 1
    fake = torch.rand(40, 3, 16, 16) * 2 - 1
    out = evaluate(["fd_effnet", "fd_inf_effnet", "fd_bootstrap_effnet"],
                   _ctx(real, fake, options={"fd_inf_effnet": {"points": 5, "min_fraction": 0.25},
                                             "fd_bootstrap_effnet": {"resamples": 20}}))
    v = out["values"]
    assert np.isfinite(v["fd_inf_effnet"]) and v["fd_effnet_boot_low"] < v["fd_effnet_boot_high"]
    assert out["protocol"]["fd_inf_effnet"]["points"] == 5 and out["metric_of"]["fd_effnet_boot_std"] == \
        "fd_bootstrap_effnet"
    with pytest.raises(ConfigError, match=r"at least 30 generated images for fd_inf_effnet \(15 subset sizes"):
        evaluate(["fd_inf_effnet"], _ctx(real, fake[:20]))


# ------------------------------------------------------------------ floors and pairs in a study
def _floor_study(splits, metrics=("swd", "memorization_effnet")):
    base = tiny_config(**{"eval.metrics": list(metrics), "eval.every": 20,
                          "optimization.iterations": 20})
    return {"name": f"floors{splits}", "base": base, "floor_splits": splits, "seeds": [0, 1],
            "variants": [{"name": "plain", "set": {}},
                         {"name": "lr", "set": {"optimization.lr_g": 1e-3, "optimization.lr_d": 1e-3}}]}


def test_a_study_shows_floors_and_the_closest_pairs(tmp_path):
    import math

    from harness.analysis import load_study
    from harness.analysis.report import write_report
    from harness.analysis.tables import comparison_table, gap_closed, pairwise_table
    from harness.store import StudyRecord
    from tests.conftest import run_study_inline

    root = run_study_inline(_floor_study(3), tmp_path / "r")
    floors = StudyRecord(root).read_floors()
    assert len(floors) == 1 and floors[0]["splits"] == 3 and floors[0]["dataset"] == "shapes"
    assert set(floors[0]["floor"]) >= {"swd", "memorization_effnet", "mifid_effnet"}
    res = load_study(root)
    assert res.floor("swd")["mean"] == pytest.approx(floors[0]["floor"]["swd"]["mean"])
    assert res.floor("nn_ratio_effnet")["n"] == 32  # min(eval.n_samples, half of 64)
    comparison = comparison_table(res, metrics=["best.swd"])
    text = comparison.render("md")
    assert "real vs real (floor)" in text and "Floor: the metric between two random halves" in text
    pairwise = pairwise_table(res, metric="best.swd", baseline="plain")
    data = pairwise.data.set_index("configuration")
    floor = floors[0]["floor"]["swd"]["mean"]
    expected = gap_closed(data.loc["plain", "mean"], data.loc["lr", "mean"], floor)
    assert math.isfinite(expected) and data.loc["lr", "gap_closed"] == pytest.approx(expected)
    assert "gap to floor closed" in pairwise.render("md")
    assert gap_closed(10.0, 4.0, 2.0) == pytest.approx(0.75) and gap_closed(0.2, 0.6, 1.0) == pytest.approx(0.5)
    page = write_report(root, png=False, notice=lambda line: None).read_text()
    section = page[page.index('id="memorisation"'):page.index('id="over-time"')]
    assert section.count("<img") == 2 and "near-copies" in section  # one per configuration
    glossary = page[page.index('id="glossary"'):page.index('id="samples"')]
    assert "memorization_effnet: lower, mifid_effnet: lower, nn_ratio_effnet: higher" in glossary
    # no floors when the study says so
    plain = run_study_inline(_floor_study(0), tmp_path / "r0")
    assert StudyRecord(plain).read_floors() == []
    assert "real vs real" not in comparison_table(load_study(plain), metrics=["best.swd"]).render("md")


def test_a_study_run_before_floors_existed_still_resumes(tmp_path):
    """Its study.yaml lacks floor_splits: the same study, at its default."""
    import yaml

    from harness.errors import ConfigError as Refused
    from harness.runner import StudyRunner
    from harness.study import parse_study

    study = parse_study(_floor_study(5, metrics=["swd"]))  # the default
    runner = StudyRunner(study, tmp_path, resume=True, out=lambda line: None)
    old = study.to_dict()
    old.pop("floor_splits")
    runner.record.write_study(old)
    runner.prepare()  # accepted
    changed = dict(old, seeds=[5])
    runner.record.write_study(changed)
    with pytest.raises(Refused, match="differs"):
        StudyRunner(study, tmp_path, resume=True, out=lambda line: None).prepare()
