"""Every augmentation x regularizer x transfer combination trains at 16 px, the ones
that make no sense are refused by validation, and resume restores variant state."""
import math

import pytest

from harness.errors import ConfigError
from harness.registry import AUGMENTS, REGULARIZERS, TRANSFERS
from harness.spec import parse_trial
from harness.store import TrialRecord
from harness.trial import run_trial
from tests.conftest import tiny_config

AUGMENT_KWARGS = {"ada": {"p": 0.5, "speed_kimg": 1.0}}
REGULARIZER_KWARGS = {"r1": {"interval": 2}}
TRANSFER_KWARGS = {"minegan": {"mine_iterations": 2}, "freezed": {"layers": 1}}
AUGMENTS_ = ["none", "flip", "diffaugment", "ada"]
REGULARIZERS_ = [None, "cr", "bcr", "zcr", "r1", "gp", "lecam", "instance_noise"]
TRANSFERS_ = ["scratch", "finetune", "freezed", "bsa", "minegan"]
# Regularizers of style-based generators only (refused for the DCGAN here): their
# combinations with every augmentation and transfer are tests/test_stylegan2.py's.
STYLEGAN2_ONLY = ["pl"]


def test_the_matrix_covers_every_registered_variant():
    assert set(AUGMENTS_) == set(AUGMENTS.names())
    assert set(REGULARIZERS_) - {None} | set(STYLEGAN2_ONLY) == set(REGULARIZERS.names())
    assert set(TRANSFERS_) == set(TRANSFERS.names())


def combination(augment, regularizer, transfer, **extra):
    cfg = {
        "augment.policy": augment, "augment.kwargs": AUGMENT_KWARGS.get(augment, {}),
        "regularizers": [] if regularizer is None else [
            {"name": regularizer, "weight": 1.0, "kwargs": REGULARIZER_KWARGS.get(regularizer, {})}],
        "transfer.method": transfer, "transfer.kwargs": TRANSFER_KWARGS.get(transfer, {}),
        "transfer.source": None if transfer == "scratch" else "tiny-src",
        "optimization.iterations": 4, "optimization.batch_size": 4,
        "eval.every": 0, "sample_every": 0, "log_every": 2, "checkpoint_every": 100,
    }
    cfg.update(extra)
    return tiny_config(**cfg)


@pytest.mark.parametrize("transfer", TRANSFERS_)
@pytest.mark.parametrize("regularizer", REGULARIZERS_)
@pytest.mark.parametrize("augment", AUGMENTS_)
def test_every_combination_trains(source_zoo, tmp_path, augment, regularizer, transfer):
    result = run_trial(combination(augment, regularizer, transfer), tmp_path / "t")
    assert result.status == "completed", result.error
    rows = TrialRecord(tmp_path / "t").reports()
    assert [r["iteration"] for r in rows] == [2, 4]
    for row in rows:
        assert all(math.isfinite(v) for v in row["losses"].values()), row["losses"]
        assert row["effective_batch"] == 4
    losses = rows[-1]["losses"]
    if regularizer in ("cr", "bcr", "zcr", "r1", "gp", "lecam"):
        assert f"reg_{regularizer}" in losses
    if regularizer == "zcr":
        assert "reg_zcr_g" in losses
    if regularizer == "instance_noise":
        assert rows[-1]["regularizers"]["instance_noise_sigma"] == pytest.approx(0.1 * (1 - 3 / 4))
    if augment == "ada":
        assert 0.0 <= rows[-1]["augment"]["ada_p"] <= 1.0
    expected_stage = {"scratch": "train", "finetune": "finetune", "freezed": "freezed", "bsa": "bsa",
                      "minegan": "finetune"}[transfer]
    assert rows[-1]["stage"] == expected_stage


@pytest.mark.parametrize("overrides, path, fragment", [
    ({"augment.policy": "flip", "dataset.hflip": True}, "augment.policy", "dataset.hflip"),
    ({"augment.policy": "diffaugment", "augment.kwargs": {"policy": "color,zoom"}}, "augment.kwargs.policy",
     "color, translation, cutout"),
    ({"augment.policy": "diffaugment", "augment.kwargs": {"policy": "color,color"}}, "augment.kwargs.policy",
     "non-repeating"),
    ({"augment.policy": "diffaugment", "augment.kwargs": {"saturation": [2.0, 1.0]}},
     "augment.kwargs.saturation", "low <= high"),
    ({"augment.policy": "ada", "augment.kwargs": {"target": 1.5}}, "augment.kwargs.target", "1"),
    ({"augment.policy": "ada", "augment.kwargs": {"zoom": True}}, "augment.kwargs.zoom", "allowed keys"),
    ({"loss.name": "wgan_gp", "regularizers": [{"name": "gp"}]}, "regularizers[0].name", "gp_weight: 0"),
    ({"regularizers": [{"name": "r1"}, {"name": "instance_noise", "weight": 2.0}]}, "regularizers[1].weight",
     "kwargs.sigma"),
    ({"regularizers": [{"name": "cr", "kwargs": {"transform": "flip,warp"}}]}, "regularizers[0].kwargs.transform",
     "flip, color, translation, cutout"),
    ({"regularizers": [{"name": "cr"}, {"name": "cr"}]}, "regularizers[1].name", "at most once"),
    ({"regularizers": [{"name": "lecam", "weight": -1.0}]}, "regularizers[0].weight", "0"),
    ({"regularizers": [{"name": "dropout"}]}, "regularizers[0].name", "lecam"),
])
def test_combinations_that_make_no_sense_are_refused(overrides, path, fragment):
    with pytest.raises(ConfigError) as err:
        parse_trial(tiny_config(**overrides))
    assert err.value.path == path, str(err.value)
    assert fragment in str(err.value)


def test_wgan_gp_with_its_own_penalty_off_takes_the_gp_regularizer():
    spec = parse_trial(tiny_config(**{"loss.name": "wgan_gp", "loss.kwargs": {"gp_weight": 0.0},
                                      "regularizers": [{"name": "gp", "weight": 10.0}]}))
    assert spec.regularizers[0].name == "gp"


class Crash(Exception):
    pass


def test_resume_restores_ada_p_and_lecam_anchors_exactly(tmp_path):
    cfg = tiny_config(**{
        "augment.policy": "ada", "augment.kwargs": {"interval": 2, "speed_kimg": 0.2},
        "regularizers": [{"name": "lecam", "weight": 0.3}],
        "optimization.iterations": 30, "eval.every": 0, "sample_every": 0, "log_every": 5,
        "checkpoint_every": 10,
    })
    reference = run_trial(cfg, tmp_path / "ref")
    assert reference.status == "completed"

    def crash_at_25(row, trial):
        if row["iteration"] == 25:
            raise Crash()

    with pytest.raises(Crash):
        run_trial(cfg, tmp_path / "resumed", callbacks=[crash_at_25])
    assert TrialRecord(tmp_path / "resumed").status()["status"] == "failed"
    assert run_trial(cfg, tmp_path / "resumed").status == "completed"  # from the checkpoint at 20
    rows = TrialRecord(tmp_path / "resumed").reports()
    ref = TrialRecord(tmp_path / "ref").reports()
    assert [r["iteration"] for r in rows] == [r["iteration"] for r in ref] == [5, 10, 15, 20, 25, 30]
    ps = [r["augment"]["ada_p"] for r in ref]
    assert len(set(ps)) > 2  # p moved, so restoring it is tested
    assert ref[3]["regularizers"]["lecam_real"] != 0.0
    for row, want in zip(rows, ref):
        assert row["augment"] == want["augment"], row["iteration"]
        assert row["regularizers"] == want["regularizers"], row["iteration"]
        assert row["losses"] == want["losses"], row["iteration"]
