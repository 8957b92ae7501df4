"""build_exudate_loss: the loss object for each (name, branches) row of the ablation, and clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.losses import DiceLoss

from monai_exudate.losses import (
    ClassBalancedBCELoss,
    DSMLoss,
    DualBranchLoss,
    RebalancedPixelSampler,
    SingleBranchLoss,
    UniformPixelSampler,
)
from monai_exudate.losses.factory import LOSS_NAMES, authors_sample_rate, build_exudate_loss


def branch_outputs(batch: int = 2, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "out": torch.randn(batch, 1, size, size, generator=g, requires_grad=True),
        "aux": torch.randn(batch, 1, size // 2, size // 2, generator=g, requires_grad=True),
    }


def test_dual_dsm():
    loss = build_exudate_loss("dsm", dual=True, sample_rate=0.25, mode="expected", aux_weight=0.4)
    assert isinstance(loss, DualBranchLoss) and isinstance(loss.loss, DSMLoss)
    assert isinstance(loss.loss.large_loss.sampler, UniformPixelSampler)
    assert isinstance(loss.loss.small_loss.sampler, RebalancedPixelSampler)
    assert loss.loss.small_loss.sampler.sample_rate == 0.25
    assert loss.loss.mode == "expected" and loss.aux_weight == 0.4


def test_dual_dice_uses_uniform_samplers_on_both_branches():
    loss = build_exudate_loss("dice", dual=True)
    assert isinstance(loss, DualBranchLoss) and isinstance(loss.loss, DSMLoss)
    assert isinstance(loss.loss.large_loss.sampler, UniformPixelSampler)
    assert isinstance(loss.loss.small_loss.sampler, UniformPixelSampler)


@pytest.mark.parametrize(("name", "base"), [("dice", DiceLoss), ("cbce", ClassBalancedBCELoss)])
def test_single_branch_baselines(name, base):
    loss = build_exudate_loss(name, dual=False, aux_weight=0.2, side_weight=0.5)
    assert isinstance(loss, SingleBranchLoss) and type(loss.loss) is base
    assert (loss.aux_weight, loss.side_weight) == (0.2, 0.5)
    value = loss(branch_outputs(), (torch.rand(2, 1, 16, 16) < 0.2).float())
    assert value.ndim == 0 and torch.isfinite(value)


def test_single_dice_is_monai_sigmoid_dice():
    out = branch_outputs()["out"]
    target = (torch.rand(2, 1, 16, 16) < 0.2).float()
    loss = build_exudate_loss("dice", dual=False, smooth=1.0)
    expected = DiceLoss(sigmoid=True, smooth_nr=1.0, smooth_dr=1.0)(out, target)
    torch.testing.assert_close(loss({"out": out}, target), expected)


@pytest.mark.parametrize(
    ("name", "dual", "match"),
    [
        ("cbce", True, "'cbce'"),
        ("dsm", False, "'dsm'"),
        ("focal", True, "'focal'"),
        ("focal", False, "'focal'"),
        ("DSM", True, "'DSM'"),
    ],
)
def test_invalid_combinations(name, dual, match):
    with pytest.raises(ValueError, match=match):
        build_exudate_loss(name, dual=dual)


VALID = {
    ("dsm", True): (DualBranchLoss, DSMLoss),
    ("dice", True): (DualBranchLoss, DSMLoss),
    ("dice", False): (SingleBranchLoss, DiceLoss),
    ("cbce", False): (SingleBranchLoss, ClassBalancedBCELoss),
}


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("dual", [True, False])
def test_every_combination_is_built_or_refused(name, dual):
    if (name, dual) not in VALID:
        with pytest.raises(ValueError, match=f"'{name}'"):
            build_exudate_loss(name, dual=dual)
        return
    outer, inner = VALID[(name, dual)]
    loss = build_exudate_loss(name, dual=dual)
    assert type(loss) is outer and type(loss.loss) is inner


@pytest.mark.parametrize("mode", ["sampled", "expected"])
@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_dsm_finite_on_empty_targets(mode, alpha):
    loss = build_exudate_loss("dsm", dual=True, mode=mode)
    loss.loss.alpha = alpha
    outputs = {"large": branch_outputs(seed=0), "small": branch_outputs(seed=1)}
    empty = torch.zeros(2, 1, 16, 16)
    value = loss(outputs, empty, empty)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    grads = [t.grad for branch in outputs.values() for t in branch.values()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # one branch empty, the other with exudates: still finite
    some = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2)) < 0.1).float()
    assert torch.isfinite(loss(outputs, some, empty)) and torch.isfinite(loss(outputs, empty, some))


def test_auxiliary_rule_of_dual_losses():
    plain = build_exudate_loss("dsm", dual=True, mode="expected")
    assert isinstance(plain.aux_loss, DiceLoss)  # the authors' rule is the default
    assert build_exudate_loss("dsm", dual=True, mode="expected", aux_loss="dsm").aux_loss is None
    with pytest.raises(ValueError, match="aux_loss"):
        build_exudate_loss("dsm", dual=True, aux_loss="shared")


def test_sample_rate_per_architecture_follows_the_authors_scripts():
    assert [authors_sample_rate(a) for a in ("pspnet", "deeplabv3", "hed", "unet")] == [0.5, 0.25, 0.25, 0.5]
    with pytest.raises(ValueError, match="arch"):
        authors_sample_rate("segformer")
    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[2] / "bundles/exudate_dsm/configs/train.json"))
    for arch, rate in (("deeplabv3", 0.25), ("pspnet", 0.5)):
        parser.update({"model_settings#arch": arch})
        assert parser.get_parsed_content("training_recipe#sample_rate") == rate
