"""Mixed precision and the backend switches (harness/precision.py): bf16 on the CPU
against fp32, what stays fp32, the fp16 gradient scalers' skips, divergence and resume
(fp16 autocast runs on this CPU too; validation refuses it there for users), refused
configs, and TF32 kept out of evaluation."""
import json

import pytest
import torch

from harness import precision as precision_module
from harness import trial as trial_module
from harness.errors import ConfigError
from harness.precision import MAX_SKIPPED_IN_ROW, MIN_SCALE, Precision, set_tf32, tf32_enabled
from harness.spec import parse_trial
from harness.store import TrialRecord
from harness.trial import Trial, run_trial
from tests.conftest import tiny_config
from tests.test_trial import _NanLoss, _NanParams


@pytest.fixture(autouse=True)
def _restore_backend_switches():
    saved = (tf32_enabled(), torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    yield
    set_tf32(saved[0])
    torch.backends.cudnn.benchmark = saved[1]
    torch.use_deterministic_algorithms(saved[2])


@pytest.fixture
def nan_loss():
    """Hinge loss that turns NaN after ``after`` D steps, as ``loss.name: test_nan``."""
    from harness.registry import LOSSES

    LOSSES.register("test_nan", params=_NanParams)(_NanLoss)
    yield
    LOSSES.unregister("test_nan")


@pytest.fixture
def fp16_on_cpu(monkeypatch):
    """Let fp16 train on the CPU here (the scaler logic is the same; CPU fp16 is slow)."""
    monkeypatch.setitem(precision_module.PRECISION_DEVICES, "fp16", ("cuda", "cpu"))


def _trained(tmp_path, name, **overrides):
    config = tiny_config(**{"optimization.iterations": 6, "eval.every": 0, "sample_every": 0, **overrides})
    trial = Trial(parse_trial(config), tmp_path / name)
    result = trial.run()
    return trial, result


def test_bf16_on_cpu_trains_close_to_fp32_and_keeps_the_weights_fp32(tmp_path):
    fp32, r32 = _trained(tmp_path, "fp32")
    bf16, r16 = _trained(tmp_path, "bf16", **{"performance.precision": "bf16"})
    assert r32.status == r16.status == "completed"
    z = torch.randn(16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = fp32.models.G_ema(z), bf16.models.G_ema(z)
    diff = (a - b).abs().max().item()
    assert 0 < diff < 2e-3, diff        # bf16 ran (not bitwise fp32), and stayed close (~5e-5 here)
    assert all(p.dtype == torch.float32 for m in (bf16.models.G, bf16.models.D, bf16.models.G_ema)
               for p in m.parameters())
    rows = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(list(r["losses"].values()))).all() for r in rows)
    assert rows[-1]["performance"]["precision"] == "bf16" and "amp" not in rows[-1]
    losses32 = json.loads((tmp_path / "fp32" / "metrics.jsonl").read_text().splitlines()[-1])["losses"]
    assert abs(rows[-1]["losses"]["d_loss"] - losses32["d_loss"]) < 0.05


def test_only_model_calls_run_under_autocast(tmp_path, monkeypatch):
    """Losses see fp32 logits; R1 differentiates D in fp32, outside autocast."""
    from variants.regularize.r1 import R1

    seen = {"loss": set(), "r1": set()}
    original_term = R1.d_term

    def d_term(self, ctx):
        seen["r1"].add((torch.is_autocast_enabled("cpu"), ctx.real_aug.dtype))
        return original_term(self, ctx)

    monkeypatch.setattr(R1, "d_term", d_term)
    from variants.losses import Hinge

    original_loss = Hinge.d_loss

    def d_loss(self, real_logits, fake_logits):
        seen["loss"].add((torch.is_autocast_enabled("cpu"), real_logits.dtype, fake_logits.dtype))
        return original_loss(self, real_logits, fake_logits)

    monkeypatch.setattr(Hinge, "d_loss", d_loss)
    _, result = _trained(tmp_path, "t", **{"performance.precision": "bf16", "optimization.iterations": 2,
                                         "regularizers": [{"name": "r1", "weight": 1.0}]})
    assert result.status == "completed"
    assert seen["r1"] == {(False, torch.float32)}
    assert seen["loss"] == {(False, torch.float32, torch.float32)}


def _model_and_precision():
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt, Precision("fp16", "cpu")


def _backward(model, prec, poison=False):
    x = torch.ones(2, 4)
    with prec.autocast():
        out = model(x)
    loss = out.float().mean() * (float("inf") if poison else 1.0)
    prec.backward(loss, "d")


def test_fp16_scaler_skips_non_finite_steps_and_counts_them():
    model, opt, prec = _model_and_precision()
    start = prec.scalers["d"].get_scale()
    weight = model.weight.detach().clone()
    _backward(model, prec, poison=True)
    assert not prec.step("d", opt)                          # inf gradients: skipped
    assert torch.equal(model.weight, weight)                 # ... and the weights untouched
    assert prec.scalers["d"].get_scale() == start / 2 and prec.skipped_in_row["d"] == 1
    opt.zero_grad()
    _backward(model, prec)
    assert prec.step("d", opt) and not torch.equal(model.weight, weight)
    assert prec.skipped_in_row["d"] == 0 and prec.skipped["d"] == 1
    assert not prec.step("d", opt, finite=False)            # a loss overflowed: skipped whatever the grads
    assert prec.stats() == {"scale_d": start / 4, "skipped_d": 2, "scale_g": start, "skipped_g": 0}
    fresh = Precision("fp16", "cpu")
    fresh.load_state_dict(prec.state_dict())
    assert fresh.stats() == prec.stats() and fresh.skipped_in_row == prec.skipped_in_row


def test_fp16_gives_up_after_too_many_skips_or_too_small_a_scale():
    model, opt, prec = _model_and_precision()
    _backward(model, prec)  # a scaler's scale exists once it has scaled a loss
    for _ in range(MAX_SKIPPED_IN_ROW - 1):
        prec.scalers["d"].update(2.0 ** 10)  # keep the scale up: only the run of skips counts here
        prec.step("d", opt, finite=False)
    assert prec.failure() is None
    prec.scalers["d"].update(2.0 ** 10)
    prec.step("d", opt, finite=False)
    assert prec.failure() == f"{MAX_SKIPPED_IN_ROW} D steps in a row skipped by the fp16 gradient scaler " \
                             "(non-finite gradients)"
    low = Precision("fp16", "cpu")
    low.scalers["g"].scale(torch.ones(()))
    low.scalers["g"].update(MIN_SCALE)
    assert low.failure() is None
    low.scalers["g"].update(MIN_SCALE / 2)
    assert low.failure() == "the fp16 gradient scale of G fell to 0.000488281, below 0.000976562"
    assert Precision("bf16", "cpu").failure() is None and Precision("bf16", "cpu").stats() == {}


def test_an_fp16_trial_skips_overflowed_steps_and_diverges_only_after_a_run_of_them(tmp_path, fp16_on_cpu, nan_loss):
    nan_after = {"loss.name": "test_nan", "loss.kwargs": {"after": 3}, "optimization.iterations": 100,
                 "eval.every": 0, "sample_every": 0, "log_every": 1}
    fp32 = run_trial(tiny_config(**nan_after), tmp_path / "fp32")
    assert fp32.status == "diverged" and fp32.iteration == 3         # fp32: the first NaN ends it
    fp16 = run_trial(tiny_config(**nan_after, **{"performance.precision": "fp16"}), tmp_path / "fp16")
    status = TrialRecord(tmp_path / "fp16").status()
    # every skip halves D's scale: from 2^16 it falls below 2^-10 after 27 (before 50 in a row)
    assert fp16.status == "diverged" and 3 + 20 < fp16.iteration <= 3 + 27, fp16.iteration
    assert status["error"] == f"the fp16 gradient scale of D fell to {2.0 ** -11:g}, below {MIN_SCALE:g} " \
                              f"at iteration {fp16.iteration}"
    rows = TrialRecord(tmp_path / "fp16").reports()
    assert rows[-1]["iteration"] == fp16.iteration - 1  # the row before the step that gave up
    assert rows[-1]["amp"]["skipped_d"] >= fp16.iteration - 4 and rows[-1]["amp"]["scale_d"] == MIN_SCALE
    # the skipped steps' losses are left out of the rows, not written as NaN
    assert all(torch.isfinite(torch.tensor(list(r["losses"].values()))).all() for r in rows)


def test_fp16_resume_restores_the_scalers(tmp_path, fp16_on_cpu):
    config = tiny_config(**{"performance.precision": "fp16", "optimization.iterations": 8, "eval.every": 0,
                            "sample_every": 0, "checkpoint_every": 4, "log_every": 1})
    whole = run_trial(config, tmp_path / "whole")
    spec = parse_trial(config)
    first = Trial(spec, tmp_path / "parts")
    assert first.start() is None and first.advance(4) is None
    first.checkpoint_now()
    scale_at_4 = first.models.precision.stats()
    first.close()
    resumed = Trial(spec, tmp_path / "parts")
    resumed.start()
    assert resumed.models.precision.stats() == scale_at_4
    assert resumed.advance() is not None
    resumed.close()
    assert whole.status == "completed"
    a, b = TrialRecord(tmp_path / "whole").reports(), TrialRecord(tmp_path / "parts").reports()
    assert [r["losses"] for r in a] == [r["losses"] for r in b]
    assert [r["amp"] for r in a] == [r["amp"] for r in b]
    assert a[-1]["amp"]["skipped_d"] + a[-1]["amp"]["skipped_g"] > 0  # a scale of 2^16 overflows at first


@pytest.mark.parametrize("change, message", [
    ({"performance.precision": "fp16"},
     r"performance.precision: got 'fp16'; expected fp32 or bf16 on device cpu \(fp16 trains on cuda only\)"),
    ({"performance.precision": "bf16", "device": "mps", "optimization.clock": "wall"},
     r"performance.precision: got 'bf16'; expected fp32 on device mps \(bf16 trains on cpu and cuda only\)"),
    ({"performance.precision": "half"}, r"performance.precision: got 'half'; expected one of fp32, bf16, fp16"),
])
def test_impossible_precisions_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_trial(tiny_config(**change))
    parse_trial(tiny_config(**{"performance.precision": "fp16", "device": "cuda"}))  # a GPU preset validates here


def test_switches_are_set_for_training_and_recorded_in_every_row(tmp_path, monkeypatch):
    """(Evaluation turns TF32 off on CUDA whatever training uses: harness.precision.full_precision,
    tests/test_eval_backend.py.)"""
    during = set()
    real_step = trial_module.discriminator_step

    def step(*args, **kwargs):
        during.add((tf32_enabled(), torch.are_deterministic_algorithms_enabled()))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trial_module, "discriminator_step", step)
    _, result = _trained(tmp_path, "t", **{"performance.allow_tf32": True, "performance.deterministic": True,
                                         "eval.every": 3})
    assert result.status == "completed" and during == {(True, True)}
    rows = TrialRecord(tmp_path / "t").reports()
    assert rows and all(r["performance"]["allow_tf32"] is True and r["performance"]["deterministic"] is True
                        and r["performance"]["cudnn_benchmark"] is False and r["performance"]["precision"] == "fp32"
                        for r in rows)
    during.clear()
    _trained(tmp_path, "u")
    assert during == {(False, False)}  # each trial sets its own
