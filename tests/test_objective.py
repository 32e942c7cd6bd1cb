"""The objective's terms against values computed by hand on tiny networks, and ADA's feedback loop."""

import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.models import DOutput
from ganforge.training.augment import ADA, DiffAugment, NoAugment
from ganforge.training.objective import LOSSES, Objective
from ganforge.training.objective.regularisers import R1, R2, GradientPenalty, LeCam

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-0.5, 1.5, 0.0])


def sp(v):
    return math.log1p(math.exp(v))


@pytest.mark.parametrize(
    ("name", "d", "g"),
    [
        (
            "nonsat",
            (sp(-2) + sp(1) + sp(-0.5)) / 3 + (sp(-0.5) + sp(1.5) + sp(0)) / 3,
            (sp(0.5) + sp(-1.5) + sp(0)) / 3,
        ),
        ("hinge", (0 + 2 + 0.5) / 3 + (0.5 + 2.5 + 1) / 3, -(1.0 / 3)),
        ("wgan", 1.0 / 3 - 1.5 / 3, -(1.0 / 3)),
        ("rpgan", (sp(-2.5) + sp(2.5) + sp(-0.5)) / 3, (sp(2.5) + sp(-2.5) + sp(0.5)) / 3),
        ("lsgan", 0.5 * ((1 + 4 + 0.25) / 3 + (0.25 + 2.25 + 0) / 3), 0.5 * (2.25 + 0.25 + 1) / 3),
    ],
)
def test_each_loss_matches_its_formula(name, d, g):
    loss = LOSSES[name]
    assert float(loss.d(REAL, FAKE)) == pytest.approx(d, rel=1e-6)
    assert float(loss.g(FAKE, REAL)) == pytest.approx(g, rel=1e-6)


def test_only_relativistic_losses_read_real_logits_in_g():
    assert {n for n, loss in LOSSES.items() if loss.uses_real_in_g} == {"rpgan"}
    with pytest.raises(ValueError, match="needs D's logits on real"):
        LOSSES["rpgan"].g(FAKE)


def linear_judge(w):
    """D(x) = <w, x> per sample: its input gradient is w everywhere."""
    return lambda x, y: ((x.flatten(1) * w.flatten()).sum(1),)


def test_r1_r2_are_the_mean_squared_input_gradient_norm():
    w = torch.tensor([[[1.0, 2.0], [0.0, -2.0]]])  # |w|^2 = 9
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    assert float(R1(10.0, 1)(linear_judge(w), real, fake, None)) == pytest.approx(9.0)
    assert float(R2(10.0, 1)(linear_judge(w), real, fake, None)) == pytest.approx(9.0)
    # a quadratic D, sum(x^2): gradient 2x, so R1 = E 4|x|^2 -- on the real batch only (R2: on the fake one)
    quad = lambda x, y: ((x**2).flatten(1).sum(1),)  # noqa: E731
    assert float(R1(1.0, 1)(quad, real, fake, None).detach()) == pytest.approx(
        float(4 * real.square().flatten(1).sum(1).mean())
    )
    assert float(R2(1.0, 1)(quad, real, fake, None).detach()) == pytest.approx(
        float(4 * fake.square().flatten(1).sum(1).mean())
    )
    # gamma/2 convention, lazily scaled by the interval
    assert R1(10.0, 1).scale() == 5.0 and R1(10.0, 16).scale() == 80.0


def test_r1_backpropagates_into_d():
    conv = torch.nn.Conv2d(1, 1, 2)
    judge = lambda x, y: (conv(x).flatten(1).sum(1),)  # noqa: E731
    R1(1.0, 1).loss(judge, torch.randn(4, 1, 2, 2), torch.randn(4, 1, 2, 2), None).backward()
    # D = <W, x> + b: R1 = |W|^2, so its gradient is 2W * gamma/2 = W, and b gets none
    assert torch.allclose(conv.weight.grad, conv.weight.detach())
    assert conv.bias.grad is None or float(conv.bias.grad.abs()) == 0


def test_gp_is_the_squared_distance_of_the_gradient_norm_from_one():
    w = torch.full((1, 2, 2), 1.0)  # |w| = 2 -> (2 - 1)^2 = 1
    real, fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    assert float(GradientPenalty(10.0, 1)(linear_judge(w), real, fake, None)) == pytest.approx(1.0)
    assert float(GradientPenalty(10.0, 1)(linear_judge(w / 2), real, fake, None)) == pytest.approx(0.0, abs=1e-6)


def test_penalties_are_due_every_interval():
    obj = Objective("hinge", {"r1": (1.0, 4), "r2": (0.0, 1), "gp": (2.0, 1)})
    assert [p.name for p in obj.penalties] == ["r1", "gp"]  # weight 0: off
    due = [[p.name for p in obj.due(s)] for s in (1, 2, 3, 4, 8)]
    assert due == [["gp"], ["gp"], ["gp"], ["r1", "gp"], ["r1", "gp"]]


def test_lecam_keeps_its_averages_as_buffers_and_matches_the_formula():
    lc = LeCam(weight=0.5, decay=0.9)
    assert set(lc.state_dict()) == {"ema_real", "ema_fake"}
    real, fake = (torch.tensor([2.0, 0.0]),), (torch.tensor([-1.0, -3.0]),)
    value = lc(real, fake)
    # averages after one update from 0: 0.1 * mean(real) = 0.1, 0.1 * mean(fake) = -0.2
    assert float(lc.ema_real) == pytest.approx(0.1) and float(lc.ema_fake) == pytest.approx(-0.2)
    by_hand = ((2.2**2 + 0.2**2) / 2) + ((1.1**2 + 3.1**2) / 2)  # relu(D(x) - ema_f)^2, relu(ema_r - D(G(z)))^2
    assert float(value) == pytest.approx(0.5 * by_hand)


def test_class_loss_is_a_term_of_d_on_real_and_of_g_on_fake():
    obj = Objective("hinge", {}, class_loss=2.0)
    logits, target = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    real = DOutput((REAL[:2],), logits, target)
    fake = DOutput((FAKE[:2],), logits, target)
    ce = float(F.cross_entropy(logits, target))
    d, _ = obj.d_main(real, fake)
    assert float(d) == pytest.approx(float(LOSSES["hinge"].d(REAL[:2], FAKE[:2])) + 2 * ce, rel=1e-6)
    assert float(obj.g_main(fake, None)) == pytest.approx(float(LOSSES["hinge"].g(FAKE[:2])) + 2 * ce, rel=1e-6)


def test_ada_p_rises_when_d_is_sure_of_reals_and_falls_when_not():
    ada = ADA(target=0.6, interval=2, speed_kimg=1.0)  # each adjustment: 10 * 2 / 1000 = 0.02
    for step in range(1, 11):
        ada.feedback((torch.full((10,), 3.0),))  # D says "real" to every real sample: overfitting
        ada.step(step, 10)
    assert float(ada.p) == pytest.approx(0.1) and float(ada.rt) == 1.0
    for step in range(11, 31):
        ada.feedback((torch.tensor([1.0, -1.0] * 5),))  # r_t = 0 < target
        ada.step(step, 10)
    assert float(ada.p) == 0.0  # fell, and stays within [0, 1]
    assert set(ada.state_dict()) == {"p", "rt", "sign_sum", "sign_n"}


@pytest.mark.parametrize("aug", [NoAugment(), DiffAugment(), ADA(p=0.0)])
def test_identity_when_off_and_shapes_everywhere(aug):
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    if not isinstance(aug, DiffAugment):
        assert torch.allclose(aug(x), x, atol=1e-6)  # p = 0: the input (the identity warp lands on pixel centres)
    clips = torch.rand(2, 1, 5, 16, 16) * 2 - 1
    assert aug(clips).shape == clips.shape and aug(x).shape == x.shape


def test_augmentations_are_differentiable_and_keep_a_clips_frames_together():
    for aug in (DiffAugment(), ADA(p=1.0)):
        x = (torch.rand(3, 3, 16, 16) * 2 - 1).requires_grad_(True)
        aug(x).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        still = torch.rand(2, 3, 1, 16, 16).expand(2, 3, 4, 16, 16) * 2 - 1  # four identical frames per clip
        out = aug(still)
        assert torch.allclose(out[:, :, 0], out[:, :, 3]), type(aug).__name__  # one draw per clip


def test_ada_at_p_one_changes_every_sample_and_diffaugment_translation_moves_whole_pixels():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    out = ADA(p=1.0)(x)
    assert all(not torch.allclose(out[i], x[i]) for i in range(8))
    torch.manual_seed(0)
    moved = DiffAugment(policy=("translation",))(x)
    values = set(torch.unique(moved).tolist()) - {0.0}
    assert values <= set(torch.unique(x).tolist())  # no interpolation: only original values (and zero fill)
