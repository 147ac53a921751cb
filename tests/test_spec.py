"""TrialSpec parsing: defaults, overrides, and every error path names its field."""
import pytest
import yaml

from harness.cli import main
from harness.errors import ConfigError
from harness.spec import TrialSpec, load_trial, parse_trial
from tests.conftest import tiny_config


def test_defaults_are_valid_and_round_trip():
    spec = parse_trial({})
    assert isinstance(spec, TrialSpec)
    again = parse_trial(yaml.safe_load(spec.to_yaml()))
    assert again.to_dict() == spec.to_dict()


def test_yaml_exponent_strings_are_numbers():
    # YAML 1.1 reads 2e-4 (no dot) as a string; the spec takes it as the number.
    spec = parse_trial(yaml.safe_load("optimization: {lr_g: 2e-4, lr_d: 4e-4}"))
    assert spec.optimization.lr_g == pytest.approx(2e-4)
    assert spec.optimization.lr_d == pytest.approx(4e-4)


def test_effective_batch():
    spec = parse_trial({"optimization": {"batch_size": 24, "accumulation": {"d": 8, "g": 16}}})
    assert spec.optimization.effective_batch_d == 192
    assert spec.optimization.effective_batch_g == 384


def test_replace_applies_dotted_overrides():
    spec = parse_trial(tiny_config()).replace({"optimization.accumulation.d": 4, "loss.name": "wgan_gp"})
    assert spec.optimization.accumulation.d == 4 and spec.loss.name == "wgan_gp"


ERRORS = [
    # (overrides on the tiny config, dotted path in the message, a word of the allowed values)
    ({"bogus": 1}, "bogus", "allowed keys"),
    ({"optimization.accumulation.x": 2}, "optimization.accumulation.x", "allowed keys"),
    ({"optimization.accumulation.d": 0}, "optimization.accumulation.d", ">= 1"),
    ({"optimization.accumulation.g": "two"}, "optimization.accumulation.g", "integer"),
    ({"optimization.batch_size": 2.5}, "optimization.batch_size", "integer"),
    ({"optimization.lr_g": -1.0}, "optimization.lr_g", "> 0"),
    ({"optimization.lr_d": "fast"}, "optimization.lr_d", "number"),
    ({"optimization.betas": [0.5]}, "optimization.betas", "a list of"),
    ({"optimization.betas": [0.5, 1.5]}, "optimization.betas[1]", "[0, 1)"),
    ({"optimization.d_steps": 0}, "optimization.d_steps", ">= 1"),
    ({"optimization.iterations": 0}, "optimization.iterations", ">= 1"),
    ({"architecture.name": "stylegan9"}, "architecture.name", "dcgan"),
    ({"architecture.kwargs": {"widht": 8}}, "architecture.kwargs.widht", "width"),
    ({"architecture.kwargs": {"width": "wide"}}, "architecture.kwargs.width", "integer"),
    ({"architecture.kwargs": {"norm": "layer"}}, "architecture.kwargs.norm", "batch"),
    ({"loss.name": "wasserstein"}, "loss.name", "hinge"),
    ({"loss.kwargs": {"gp_weight": 5}}, "loss.kwargs", "no keyword arguments"),
    ({"loss.name": "wgan_gp", "loss.kwargs": {"gp_weight": -1}}, "loss.kwargs.gp_weight", ">= 0"),
    ({"augment.policy": "magic"}, "augment.policy", "none"),
    ({"transfer.method": "teleport"}, "transfer.method", "scratch"),
    ({"transfer.source": "zoo-model"}, "transfer.source", "null"),
    ({"regularizers": [{"name": "nope", "weight": 1}]}, "regularizers[0].name", "one of"),
    ({"regularizers": [{"weight": 1}]}, "regularizers[0].name", "required"),
    ({"regularizers": "cr"}, "regularizers", "a list"),
    ({"eval.metrics": ["fid_magic"]}, "eval.metrics[0]", "swd"),
    ({"eval.metrics": ["swd", "swd"]}, "eval.metrics", "at most once"),
    ({"eval.every": -1}, "eval.every", ">= 0"),
    ({"eval.truncation": 0}, "eval.truncation", "> 0"),
    ({"ema.decay": 1.5}, "ema.decay", "<= 1"),
    ({"dataset.channels": 5}, "dataset.channels", "3, 4"),
    ({"dataset.resolution": 36}, "dataset.resolution", "b * 2**k"),
    ({"dataset.resolution": 2}, "dataset.resolution", ">= 4"),
    ({"dataset.name": "imagenet"}, "dataset.name", "registered dataset"),
    ({"dataset.kwargs": {"count": 0}}, "dataset.kwargs.count", ">= 1"),
    ({"dataset.hflip": "yes"}, "dataset.hflip", "true or false"),
    ({"device": "gpu"}, "device", "cuda"),
    ({"threads": 0}, "threads", ">= 1"),
    ({"seed": -3}, "seed", ">= 0"),
    ({"checkpoint_every": 0}, "checkpoint_every", ">= 1"),
    ({"dataset.limit": 0}, "dataset.limit", ">= 1"),
    ({"eval.n_samples": 0}, "eval.n_samples", ">= 1"),
    ({"eval.batch_size": 0}, "eval.batch_size", ">= 1"),
    ({"eval.metrics": "swd"}, "eval.metrics", "a list"),
    ({"sample_every": -1}, "sample_every", ">= 0"),
    ({"log_every": 0}, "log_every", ">= 1"),
    ({"ema.start": -1}, "ema.start", ">= 0"),
    ({"optimization.eps": 0}, "optimization.eps", "> 0"),
    ({"optimization.accumulation": 4}, "optimization.accumulation", "a mapping with keys d, g"),
    ({"transfer.kwargs": {"stages": 2}}, "transfer.kwargs", "no keyword arguments"),
    ({"augment.kwargs": {"p": 0.5}}, "augment.kwargs", "no keyword arguments"),
    ({"name": 7}, "name", "a string"),
    ({"architecture.name": "biggan", "architecture.kwargs": {"attention": 5}}, "architecture.kwargs.attention", "0 (none)"),
    ({"architecture.name": "biggan", "architecture.kwargs": {"z_dim": 2}}, "architecture.kwargs.z_dim", "at least"),
    ({"architecture.name": "progressive", "architecture.kwargs": {"start_resolution": 6}},
     "architecture.kwargs.start_resolution", "halvings"),
]


@pytest.mark.parametrize("overrides,path,allowed", ERRORS, ids=[e[1] for e in ERRORS])
def test_error_names_the_field(overrides, path, allowed):
    with pytest.raises(ConfigError) as info:
        parse_trial(tiny_config(**overrides))
    assert info.value.path == path, str(info.value)
    assert str(info.value).startswith(path + ":")
    assert allowed in str(info.value)


def test_top_level_must_be_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        parse_trial(["not", "a", "mapping"])


def test_load_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="existing YAML file"):
        load_trial(str(tmp_path / "absent.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_trial(str(broken))


def test_cli_validate(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_config()))
    assert main(["validate", str(good)]) == 0
    assert "valid trial" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny_config(**{"optimization.accumulation.d": 0})))
    assert main(["validate", str(bad)]) == 2
    assert "optimization.accumulation.d: got 0" in capsys.readouterr().err
    assert main(["validate", str(good), "--set", "optimization.lr_g=-1"]) == 2
    assert "optimization.lr_g" in capsys.readouterr().err
    assert main(["validate", str(good), "--set", "no-equals-sign"]) == 2
    assert "--set" in capsys.readouterr().err


def test_cli_describe_counts_parameters(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    assert main(["describe", str(cfg), "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["model"]["G_parameters"] > 1000 and out["model"]["D_parameters"] > 1000
    assert out["config"]["architecture"]["name"] == "dcgan"


def test_shipped_configs_validate(tmp_path):
    import pathlib

    from tests.conftest import import_stand_ins

    import_stand_ins(tmp_path)  # the datasets a gpu preset names and the README has the user import

    from harness.spec import load_yaml
    from harness.study import is_study, load_study, plan

    files = sorted(pathlib.Path(__file__).resolve().parent.parent.glob("studies/**/*.yaml"))
    assert len(files) >= 11
    studies = 0
    for f in files:
        data = load_yaml(str(f))
        if is_study(data):
            for preset in list(data.get("presets") or {}) or [None]:
                plan(load_study(f, preset))
            studies += 1
        else:
            load_trial(str(f))
    assert studies >= 2
