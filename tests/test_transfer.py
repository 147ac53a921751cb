"""Transfer methods and the model zoo: what loads, what trains, what stays frozen."""
import json

import pytest
import torch

from harness import zoo
from harness.cli import main
from harness.errors import ConfigError
from harness.spec import parse_trial
from harness.store import TrialRecord
from harness.trial import Trial, run_trial
from tests.conftest import tiny_config

QUIET = {"eval.every": 0, "sample_every": 0, "log_every": 1, "checkpoint_every": 100}


def transfer_config(method, **overrides):
    cfg = {"transfer.method": method, "transfer.source": "tiny-src", "optimization.iterations": 6}
    cfg.update(QUIET)
    cfg.update(overrides)
    return tiny_config(**cfg)


def trained(method, tmp_path, **overrides):
    """(trial after training, source G state, source D state)."""
    spec = parse_trial(transfer_config(method, **overrides))
    trial = Trial(spec, tmp_path / method)
    trial.run()
    g_src, d_src = zoo.load_weights(zoo.resolve("tiny-src"))
    return trial, g_src, d_src


def test_zoo_entry_has_card_and_checksummed_safetensors(source_zoo):
    entry = zoo.resolve("tiny-src")
    card = zoo.read_card(entry)
    assert card["architecture"] == {"name": "dcgan", "kwargs": {"width": 8, "z_dim": 16, "norm": "batch",
                                                                 "spectral_norm_d": False}}
    assert (card["resolution"], card["channels"], card["iterations"], card["z_dim"]) == (16, 3, 20, 16)
    assert card["dataset"]["name"] == "shapes" and len(card["dataset"]["fingerprint"]) == 64
    assert set(card["files"]) == {"G.safetensors", "D.safetensors"}
    g, d = zoo.load_weights(entry)
    assert "net.1.running_mean" in g and all(isinstance(v, torch.Tensor) for v in d.values())
    assert zoo.fingerprint(entry).startswith("tiny-src:")


def test_modified_weights_are_refused(source_zoo, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(source_zoo / "tiny-src", copy)
    with open(copy / "G.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ConfigError, match="matches the sha256"):
        zoo.load_weights(copy)


def test_finetune_starts_from_the_source_and_trains_everything(source_zoo, tmp_path):
    spec = parse_trial(transfer_config("finetune"))
    trial = Trial(spec, tmp_path / "ft")
    trial.build()
    g_src, d_src = zoo.load_weights(zoo.resolve("tiny-src"))
    for key, value in trial.models.G.state_dict().items():
        assert torch.equal(value, g_src[key]), key
    for key, value in trial.models.G_ema.state_dict().items():
        assert torch.equal(value, g_src[key]), key
    trial.run()
    G, D = trial.models.G.state_dict(), trial.models.D.state_dict()
    assert not torch.equal(G["net.0.weight"], g_src["net.0.weight"])
    assert all(not torch.equal(D[k], d_src[k]) for k in D if k.endswith("weight"))
    env = json.loads((tmp_path / "ft" / "env.json").read_text())
    assert env["source_model"] == zoo.fingerprint(zoo.resolve("tiny-src"))


def test_freezed_keeps_the_frozen_d_blocks_bit_identical(source_zoo, tmp_path):
    trial, _, d_src = trained("freezed", tmp_path, **{"transfer.kwargs": {"layers": 1}})
    D = trial.models.D.state_dict()
    frozen = [k for k in D if k.startswith("_blocks.0.")]
    trained_keys = [k for k in D if k.endswith("weight") and not k.startswith("_blocks.0.")]
    assert frozen and trained_keys
    assert all(torch.equal(D[k], d_src[k]) for k in frozen)
    assert all(not torch.equal(D[k], d_src[k]) for k in trained_keys)
    assert trial.last_report["stage"] == "freezed"


def test_bsa_trains_only_the_adapted_statistics(source_zoo, tmp_path):
    trial, g_src, d_src = trained("bsa", tmp_path)
    G = trial.models.G
    adapters = {n for n, _ in G.named_parameters() if n.endswith((".scale", ".shift"))}
    assert len(adapters) == 2 * 2  # two batch norms in the tiny dcgan G, scale and shift each
    changed = {n for n, p in G.named_parameters() if n in adapters and not torch.equal(
        p, torch.ones_like(p) if n.endswith("scale") else torch.zeros_like(p))}
    assert changed == adapters
    # every source parameter of G (renamed under the wrapping Sequential) is untouched
    wrapped = {n.replace(".0.", ".", 1) if n.count(".") > 2 else n: p for n, p in G.named_parameters()}
    for name, value in g_src.items():
        if name in wrapped:
            assert torch.equal(wrapped[name], value), name
    D = trial.models.D.state_dict()
    assert any(not torch.equal(D[k], d_src[k]) for k in D)


def test_minegan_stage_one_leaves_g_bit_identical_and_stage_two_tunes_it(source_zoo, tmp_path):
    trial, g_src, _ = trained("minegan", tmp_path / "a", **{"transfer.kwargs": {"mine_iterations": 6}})
    G = trial.models.G
    for key, value in G.generator.state_dict().items():
        assert torch.equal(value, g_src[key]), key  # weights and batch-norm statistics
    assert any(p.abs().sum() > 0 for p in G.miner.net[-1].parameters())  # the miner learned
    assert trial.last_report["stage"] == "mine"
    trial, g_src, _ = trained("minegan", tmp_path / "b", **{"transfer.kwargs": {"mine_iterations": 3}})
    assert not torch.equal(trial.models.G.generator.state_dict()["net.0.weight"], g_src["net.0.weight"])
    stages = [r["stage"] for r in trial.record.reports()]
    assert stages == ["mine"] * 3 + ["finetune"] * 3


@pytest.mark.parametrize("overrides, path, fragment", [
    ({"transfer.method": "finetune", "transfer.source": None}, "transfer.source", "source model"),
    ({"transfer.method": "finetune", "transfer.source": "nope"}, "transfer.source", "tiny-src"),
    ({"transfer.method": "finetune", "dataset.resolution": 32}, "dataset.resolution", "16"),
    ({"transfer.method": "finetune", "dataset.channels": 4}, "dataset.channels", "3"),
    ({"transfer.method": "finetune", "architecture.name": "resnet", "architecture.kwargs": {}},
     "architecture.name", "dcgan"),
    ({"transfer.method": "finetune", "architecture.kwargs": {"width": 16, "z_dim": 16}},
     "architecture.kwargs", "width"),
    ({"transfer.method": "freezed", "transfer.kwargs": {"layers": 3}}, "transfer.kwargs.layers", "1..2"),
    ({"transfer.method": "bsa", "architecture.kwargs": {"width": 8, "z_dim": 16, "norm": "none"}},
     "transfer.method", "no batch norm"),
    ({"transfer.method": "scratch"}, "transfer.source", "null"),
])
def test_transfer_configs_that_cannot_work_are_refused_before_training(source_zoo, overrides, path, fragment):
    cfg = transfer_config(overrides.pop("transfer.method"), **overrides)
    with pytest.raises(ConfigError) as err:
        parse_trial(cfg)
    assert err.value.path == path and fragment in str(err.value)


def test_export_refuses_a_trial_whose_g_was_wrapped(source_zoo, tmp_path):
    trained("minegan", tmp_path, **{"transfer.kwargs": {"mine_iterations": 2}})
    with pytest.raises(ConfigError, match="changed its structure"):
        zoo.export(tmp_path / "minegan", "mined", zoo=tmp_path / "zoo")
    assert not (tmp_path / "zoo" / "mined").exists()


def test_pretrain_then_transfer_round_trip_from_the_cli(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.setenv("GANBENCH_ZOO", str(tmp_path / "zoo"))
    assert main(["data", "build", "shapes", "--resolution", "16"]) == 0
    src = tiny_config(**QUIET, **{"optimization.iterations": 10, "dataset.kwargs": {}})
    (tmp_path / "src.yaml").write_text(yaml.safe_dump(src))
    assert main(["pretrain", str(tmp_path / "src.yaml"), "--name", "shapes16", "--out", str(tmp_path / "pre"),
                 "--quiet"]) == 0
    assert main(["pretrain", str(tmp_path / "src.yaml"), "--name", "shapes16", "--quiet"]) == 2  # taken
    capsys.readouterr()
    assert main(["zoo", "list"]) == 0
    assert "shapes16" in capsys.readouterr().out
    assert main(["zoo", "show", "shapes16"]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 10
    for method in ("finetune", "freezed", "bsa", "minegan"):
        out = tmp_path / method
        assert main(["trial", str(tmp_path / "src.yaml"), "--set", f"transfer.method={method}",
                     "--set", "transfer.source=shapes16", "--set", "optimization.iterations=4",
                     "--out", str(out), "--quiet"]) == 0, method
        assert TrialRecord(out).status()["status"] == "completed"
        env = json.loads((out / "env.json").read_text())
        assert env["source_model"].startswith("shapes16:")
    capsys.readouterr()
    assert main(["trial", str(tmp_path / "src.yaml"), "--set", "transfer.method=finetune",
                 "--set", "transfer.source=shapes16", "--set", "dataset.resolution=32",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "dataset.resolution" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["zoo", "export", str(tmp_path / "finetune"), "--name", "shapes16-ft"]) == 0
    assert zoo.read_card(tmp_path / "zoo" / "shapes16-ft")["iterations"] == 4
