"""Gradient accumulation: batch b x accumulation k == batch b*k, gradient for gradient."""
import pytest
import torch

from harness.spec import parse_trial
from harness.steps import discriminator_step, generator_step
from harness.trial import Trial
from harness.store import TrialRecord
from harness.trial import run_trial
from tests.conftest import tiny_config


def built(tmp_path, batch, acc, loss="hinge", **extra):
    cfg = tiny_config(**{"architecture.kwargs": {"width": 8, "z_dim": 16, "norm": "none"},
                         "optimization.batch_size": batch,
                         "optimization.accumulation": {"d": acc, "g": acc},
                         "loss.name": loss, **extra})
    trial = Trial(parse_trial(cfg), tmp_path / f"b{batch}x{acc}")
    trial.build()
    return trial


def grads(module):
    return [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("loss", ["hinge", "non_saturating", "least_squares", "wgan_gp"])
def test_same_gradients_as_the_full_batch(tmp_path, loss):
    full = built(tmp_path, 32, 1, loss)
    chunked = built(tmp_path, 8, 4, loss)
    for a, b in zip(full.models.D.parameters(), chunked.models.D.parameters()):
        assert torch.equal(a, b)  # same seed -> same initial weights
    torch.manual_seed(5)  # wgan_gp draws interpolation weights from the global RNG
    s_full = discriminator_step(full.models, full.data, full.sampler, 32, 1, 0, full.device)
    torch.manual_seed(5)
    s_chunk = discriminator_step(chunked.models, chunked.data, chunked.sampler, 8, 4, 0, chunked.device)
    if loss != "wgan_gp":  # GP draws eps per sample in a different order across chunks
        for ga, gb in zip(grads(full.models.D), grads(chunked.models.D)):
            torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(s_full["d_loss"], s_chunk["d_loss"], rtol=1e-5, atol=1e-6)
    g_full = generator_step(full.models, full.sampler, 32, 1, 0, full.device)
    g_chunk = generator_step(chunked.models, chunked.sampler, 8, 4, 0, chunked.device)
    for ga, gb in zip(grads(full.models.G), grads(chunked.models.G)):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_full["g_loss"], g_chunk["g_loss"], rtol=1e-5, atol=1e-6)
    # the G step leaves D's weights without gradient and D trainable afterwards
    assert all(p.requires_grad for p in full.models.D.parameters())


def test_whole_trials_match(tmp_path):
    """Ten full iterations (D and G updates, EMA) agree between 32x1 and 8x4."""
    common = {"architecture.kwargs": {"width": 8, "z_dim": 16, "norm": "none"}, "optimization.iterations": 10,
              "log_every": 10, "sample_every": 0}
    run_trial(tiny_config(**common, **{"optimization.batch_size": 32}), tmp_path / "full")
    run_trial(tiny_config(**common, **{"optimization.batch_size": 8,
                                       "optimization.accumulation": {"d": 4, "g": 4}}), tmp_path / "chunk")
    a = TrialRecord(tmp_path / "full").reports()[-1]
    b = TrialRecord(tmp_path / "chunk").reports()[-1]
    assert a["samples_seen"] == b["samples_seen"] == 320
    assert a["effective_batch"] == b["effective_batch"] == 32
    for key in ("d_loss", "g_loss"):
        assert a["losses"][key] == pytest.approx(b["losses"][key], rel=1e-4, abs=1e-5)
