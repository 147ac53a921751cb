"""Loss values at known logits, and WGAN-GP's penalty."""
import pytest
import torch

from harness.interfaces import DStepContext
from harness.registry import LOSSES
from variants.losses import gradient_penalty

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def test_hinge():
    loss = LOSSES.build("hinge")
    # relu(1 - [2, -1]) = [0, 2] -> 1 ; relu(1 + [0.5, -3]) = [1.5, 0] -> 0.75
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(1.75)
    assert loss.g_loss(FAKE).item() == pytest.approx(1.25)


def test_non_saturating():
    loss = LOSSES.build("non_saturating")
    sp = torch.nn.functional.softplus
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx((sp(-REAL).mean() + sp(FAKE).mean()).item())
    assert loss.g_loss(FAKE).item() == pytest.approx(sp(-FAKE).mean().item())
    # the non-saturating G gradient does not vanish when D is confident the fake is fake
    f = torch.tensor([-10.0], requires_grad=True)
    loss.g_loss(f).backward()
    assert abs(f.grad.item()) > 0.9


def test_least_squares():
    loss = LOSSES.build("least_squares")
    assert loss.d_loss(torch.ones(3), torch.zeros(3)).item() == 0
    assert loss.g_loss(torch.ones(3)).item() == 0
    assert loss.d_loss(torch.zeros(1), torch.ones(1)).item() == pytest.approx(1.0)


def test_wgan_gp_value_and_penalty():
    loss = LOSSES.build("wgan_gp", {"gp_weight": 10.0})
    assert loss.d_loss(REAL, FAKE).item() == pytest.approx(FAKE.mean() - REAL.mean())
    # A linear critic with unit-norm weights has gradient norm 1 everywhere -> zero penalty.
    w = torch.randn(3 * 4 * 4)
    w = w / w.norm()
    D = lambda x: x.flatten(1) @ w  # noqa: E731
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    assert gradient_penalty(D, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    # Doubling the weights gives norm 2 -> penalty (2 - 1)^2 = 1, weighted by 10.
    D2 = lambda x: x.flatten(1) @ (2 * w)  # noqa: E731
    ctx = DStepContext(D2, None, real, fake, real, fake, D2(real), D2(fake), 0)
    terms = loss.d_penalties(ctx)
    assert terms["gp"].item() == pytest.approx(10.0, rel=1e-5)


def test_wgan_gp_drift():
    loss = LOSSES.build("wgan_gp", {"gp_weight": 0.0, "drift": 0.001})
    real_logits = torch.tensor([3.0, -1.0])
    ctx = DStepContext(None, None, None, None, None, None, real_logits, None, 0)
    terms = loss.d_penalties(ctx)
    assert "gp" not in terms
    assert terms["drift"].item() == pytest.approx(0.001 * 5.0)
