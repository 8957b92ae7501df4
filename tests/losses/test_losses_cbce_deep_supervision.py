"""Tests for the class-balanced BCE and the deep-supervision wrappers."""

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from monai_exudate.losses import (
    ClassBalancedBCELoss,
    DSMLoss,
    DualBranchLoss,
    DualHEDLoss,
    SingleBranchLoss,
    class_balance_weights,
)


def test_cbce_weights_hand_computed():
    y = torch.tensor([1.0, 0.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
    w = class_balance_weights(y)
    assert w.flatten().tolist() == [0.75, 0.25, 0.25, 0.25]
    # two channels are balanced separately over the batch
    y2 = torch.zeros(2, 2, 2, 2)
    y2[0, 0, 0, 0] = 1
    y2[:, 1, 0] = 1
    w2 = class_balance_weights(y2)
    assert w2[0, 0, 0, 0].item() == pytest.approx(7 / 8) and w2[1, 0, 1, 1].item() == pytest.approx(1 / 8)
    assert w2[0, 1, 0, 0].item() == pytest.approx(0.5) and w2[1, 1, 1, 0].item() == pytest.approx(0.5)


def test_cbce_value():
    x = torch.tensor([2.0, -1.0, 0.5, -3.0]).reshape(1, 1, 2, 2)
    y = torch.tensor([1.0, 0.0, 0.0, 0.0]).reshape(1, 1, 2, 2)
    p = torch.sigmoid(x).flatten().tolist()
    expected = (-0.75 * math.log(p[0]) - 0.25 * sum(math.log(1 - q) for q in p[1:])) / 4
    assert ClassBalancedBCELoss()(x, y).item() == pytest.approx(expected, rel=1e-6)
    assert ClassBalancedBCELoss("sum")(x, y).item() == pytest.approx(4 * expected, rel=1e-6)


def test_cbce_finite_without_positives():
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = ClassBalancedBCELoss()(x, torch.zeros(2, 1, 4, 4))
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == 0.0
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="reduction"):
        ClassBalancedBCELoss("none")


def _outputs(seed, size=8, aux_size=4, sides=2):
    g = torch.Generator().manual_seed(seed)
    return {
        "out": torch.randn(2, 1, size, size, generator=g),
        "aux": torch.randn(2, 1, aux_size, aux_size, generator=g),
        "side": [torch.randn(2, 1, size, size, generator=g) for _ in range(sides)],
    }


def _target(seed, size=8):
    return (torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_single_branch_sum():
    base = ClassBalancedBCELoss()
    wrapper = SingleBranchLoss(base, aux_weight=0.2, side_weight=0.5)
    out, y = _outputs(0), _target(1)
    aux_up = F.interpolate(out["aux"], size=(8, 8), mode="bilinear", align_corners=False)
    expected = base(out["out"], y) + 0.2 * base(aux_up, y) + 0.5 * (base(out["side"][0], y) + base(out["side"][1], y))
    assert wrapper(out, y).item() == pytest.approx(expected.item(), rel=1e-6)
    # a network without auxiliary outputs gives the logits alone; a bare tensor is forward's output, refused
    assert wrapper({"out": out["out"]}, y).item() == pytest.approx(base(out["out"], y).item())
    with pytest.raises(ValueError, match="forward_with_aux"):
        wrapper(out["out"], y)


def test_dual_branch_sum():
    dsm = DSMLoss(mode="expected", alpha=0.7)
    wrapper = DualBranchLoss(dsm, aux_weight=0.2, side_weight=1.0)
    large, small = _outputs(0), _outputs(1)
    yl, ys = _target(2), _target(3)

    def up(t):
        return F.interpolate(t, size=(8, 8), mode="bilinear", align_corners=False)

    expected = dsm(large["out"], yl, small["out"], ys) + 0.2 * dsm(up(large["aux"]), yl, up(small["aux"]), ys)
    for a, b in zip(large["side"], small["side"], strict=True):
        expected = expected + dsm(a, yl, b, ys)
    got = wrapper({"large": large, "small": small}, yl, ys)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    plain = wrapper({"large": {"out": large["out"]}, "small": {"out": small["out"]}}, yl, ys)
    assert plain.item() == pytest.approx(dsm(large["out"], yl, small["out"], ys).item())
    with pytest.raises(ValueError, match="forward_with_aux"):
        wrapper({"large": large["out"], "small": small["out"]}, yl, ys)


def test_dual_branch_mismatch():
    wrapper = DualBranchLoss(DSMLoss(mode="expected"))
    large, small = _outputs(0), _outputs(1, sides=1)
    with pytest.raises(ValueError, match="side"):
        wrapper({"large": large, "small": small}, _target(0), _target(1))
    with pytest.raises(ValueError, match="aux"):
        wrapper({"large": large, "small": {"out": small["out"]}}, _target(0), _target(1))
    with pytest.raises(ValueError, match="'large' and 'small'"):
        wrapper(large["out"], _target(0), _target(1))
    with pytest.raises(ValueError, match="aux_weight"):
        DualBranchLoss(DSMLoss(), aux_weight=-1)


def test_dual_branch_plain_auxiliary_rule_ignores_alpha():
    """The authors' rule: each branch's aux output gets plain Dice against its own image, not weighted by alpha."""
    dice = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0)
    large, small = _outputs(0), _outputs(1, sides=0)
    large.pop("side")
    yl, ys = _target(2), _target(3)

    def up(t):
        return F.interpolate(t, size=(8, 8), mode="bilinear", align_corners=False)

    values = []
    for alpha in (0.9, 0.1):
        dsm = DSMLoss(mode="expected", alpha=alpha)
        wrapper = DualBranchLoss(dsm, aux_weight=0.2, aux_loss=dice)
        got = wrapper({"large": large, "small": small}, yl, ys)
        expected = dsm(large["out"], yl, small["out"], ys) + 0.2 * (
            dice(up(large["aux"]), yl) + dice(up(small["aux"]), ys)
        )
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)
        values.append((got - dsm(large["out"], yl, small["out"], ys)).item())
    assert values[0] == pytest.approx(values[1], rel=1e-6)  # the aux term is the same at every alpha


def test_loss_scale_multiplies_the_whole_sum():
    dsm = DSMLoss(mode="expected", alpha=0.7)
    large, small, yl, ys = _outputs(0), _outputs(1), _target(2), _target(3)
    full = DualBranchLoss(dsm)({"large": large, "small": small}, yl, ys)
    half = DualBranchLoss(dsm, scale=0.5)({"large": large, "small": small}, yl, ys)
    assert half.item() == pytest.approx(0.5 * full.item(), rel=1e-6)
    with pytest.raises(ValueError, match="loss_scale"):
        SingleBranchLoss(ClassBalancedBCELoss(), scale=0.0)


def test_dual_hed_loss_follows_the_authors_combiner():
    """DSM on side 5 and the fusion (halved), plain Dice of both branches on sides 4-5 and the fusion (/ 8), halved."""
    dice = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0)
    dsm = DSMLoss(mode="expected", alpha=0.6)
    large, small = _outputs(0, sides=5), _outputs(1, sides=5)
    yl, ys = _target(2), _target(3)
    got = DualHEDLoss(dsm, dice, scale=0.5)({"large": large, "small": small}, yl, ys)
    pairs = [(large["side"][3], small["side"][3]), (large["side"][4], small["side"][4]), (large["out"], small["out"])]
    dsm_term = (dsm(*pairs[1][:1], yl, pairs[1][1], ys) + dsm(pairs[2][0], yl, pairs[2][1], ys)) / 2
    share = sum(dice(a, yl) + dice(b, ys) for a, b in pairs) / 8
    assert got.item() == pytest.approx(0.5 * (dsm_term + share).item() / 2, rel=1e-6)
    # sides 1-3 get no loss of their own
    for k in range(3):
        large["side"][k] = torch.full_like(large["side"][k], 50.0)
    again = DualHEDLoss(dsm, dice, scale=0.5)({"large": large, "small": small}, yl, ys)
    assert again.item() == pytest.approx(got.item(), rel=1e-6)
    with pytest.raises(ValueError, match="five side outputs"):
        DualHEDLoss(dsm, dice)({"large": _outputs(0), "small": _outputs(1)}, yl, ys)
