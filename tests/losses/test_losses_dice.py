"""Tests for the weighted (multiset) Dice loss."""

import pytest
import torch
from monai.losses import DiceLoss

from monai_exudate.losses import RebalancedPixelSampler, SampledDiceLoss, weighted_dice, weighted_dice_loss


def _case(seed=0, b=2, c=1, h=16, w=16, frac=0.1):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(b, c, h, w, generator=g) < frac).float()
    logits = torch.randn(b, c, h, w, generator=g) * 2
    return logits, target


def test_hand_computed_dice():
    p = torch.tensor([0.5, 1.0, 0.0, 0.25]).reshape(1, 1, 2, 2)
    y = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
    # (2 * 1.5 + 1) / (1.75 + 2 + 1)
    assert weighted_dice(p, y).item() == pytest.approx(4 / 4.75)
    assert weighted_dice(p, y, smooth=0.0).item() == pytest.approx(3 / 3.75)
    w = torch.tensor([2.0, 0.0, 1.0, 1.0]).reshape(1, 1, 2, 2)
    # weighted: sum(w p y) = 1, sum(w p) = 1.25, sum(w y) = 2
    assert weighted_dice(p, y, w).item() == pytest.approx(3 / 4.25)


def test_weighted_dice_equals_dice_over_explicit_multiset():
    logits, target = _case()
    probs = torch.sigmoid(logits)
    counts = RebalancedPixelSampler(0.5)(target, generator=torch.Generator().manual_seed(3))
    reps = counts.reshape(-1).long()
    p_multi = probs.reshape(-1).repeat_interleave(reps).reshape(1, 1, 1, -1)
    y_multi = target.reshape(-1).repeat_interleave(reps).reshape(1, 1, 1, -1)
    assert weighted_dice(probs, target, counts).item() == pytest.approx(weighted_dice(p_multi, y_multi).item())


def test_per_channel_mean():
    logits, target = _case(c=2)
    probs = torch.sigmoid(logits)
    per_channel = [weighted_dice(probs[:, i : i + 1], target[:, i : i + 1]) for i in range(2)]
    expected = 1 - (per_channel[0] + per_channel[1]) / 2
    assert weighted_dice_loss(probs, target).item() == pytest.approx(expected.item())


def test_uniform_matches_monai_dice_with_batch_reduction():
    logits, target = _case(c=2)
    ours = SampledDiceLoss("uniform")(logits, target)
    monai = DiceLoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)(logits, target)
    assert ours.item() == pytest.approx(monai.item(), abs=1e-6)


def test_expected_mode_close_to_mean_of_sampled():
    logits, target = _case(h=32, w=32, frac=0.05)
    sampled = SampledDiceLoss("rebalanced", 0.5, mode="sampled", generator=torch.Generator().manual_seed(1))
    expected = SampledDiceLoss("rebalanced", 0.5, mode="expected")
    values = torch.stack([sampled(logits, target) for _ in range(300)])
    # Dice at the expected counts vs the mean sampled Dice: measured about 3e-4 here (Monte Carlo noise level)
    diff = (expected(logits, target) - values.mean()).abs().item()
    assert diff < 2e-3
    assert values.std().item() > 0


def test_expected_mode_deterministic_and_sampled_varies():
    logits, target = _case()
    expected = SampledDiceLoss("rebalanced", 0.25, mode="expected")
    assert expected(logits, target).item() == expected(logits, target).item()
    sampled = SampledDiceLoss("rebalanced", 0.25, mode="sampled", generator=torch.Generator().manual_seed(0))
    assert sampled(logits, target).item() != sampled(logits, target).item()


def test_sigmoid_flag():
    logits, target = _case()
    a = SampledDiceLoss("uniform", sigmoid=True)(logits, target)
    b = SampledDiceLoss("uniform", sigmoid=False)(torch.sigmoid(logits), target)
    assert a.item() == pytest.approx(b.item())


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        SampledDiceLoss(mode="mean")
    with pytest.raises(ValueError, match="sampler"):
        SampledDiceLoss(sampler="random")
    with pytest.raises(ValueError, match="same shape"):
        SampledDiceLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
