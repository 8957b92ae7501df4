"""Full-resolution U-Net, single- and dual-branch: outputs, sharing, fusion, odd sizes, tracing, factory checks."""

from __future__ import annotations

import pytest
import torch

from monai_exudate.losses.factory import build_exudate_loss
from monai_exudate.networks import DualBranchNet, UNet, UNetBranch, build_exudate_network


def _tiny(dual: bool, **kwargs) -> torch.nn.Module:
    return build_exudate_network("unet", dual=dual, width=4, dropout=0.0, **kwargs)


@pytest.mark.parametrize("size", [(64, 48), (37, 53)])
def test_single_unet_returns_logits_in_both_modes(size):
    net = _tiny(dual=False, out_channels=2)
    assert isinstance(net, UNet)
    x = torch.randn(2, 3, *size)
    out = net.train().forward_with_aux(x)
    assert set(out) == {"out"} and out["out"].shape == (2, 2, *size)
    assert isinstance(net(x), torch.Tensor) and net(x).shape == (2, 2, *size)
    logits = net.eval()(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 2, *size)


@pytest.mark.parametrize("size", [(64, 48), (37, 53)])
def test_dual_unet_train_outputs_per_branch_with_their_own_inputs(size):
    net = _tiny(dual=True)
    assert isinstance(net, DualBranchNet) and isinstance(net.large, UNetBranch)
    out = net.train().forward_with_aux(torch.randn(2, 3, *size), torch.randn(3, 3, 40, 56))
    assert set(out) == {"large", "small"}
    assert out["large"]["out"].shape == (2, 1, *size) and out["small"]["out"].shape == (3, 1, 40, 56)
    # forward in training mode: one batch through both branches, the logits stacked as in eval mode
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)


def test_dual_unet_eval_stacks_the_branch_logits():
    net = _tiny(dual=True).eval()
    x = torch.randn(1, 3, 45, 33)
    with torch.no_grad():
        branches = net.forward_with_aux(x)
        expected = torch.cat([branches["large"]["out"], branches["small"]["out"]], dim=1)
        torch.testing.assert_close(net(x), expected)


def test_dual_unet_shares_the_encoder_but_not_the_last_stage_and_decoder():
    dual, single = _tiny(dual=True), _tiny(dual=False)
    assert not any(a is b for a, b in zip(dual.large.parameters(), dual.small.parameters()))
    n_dual = sum(p.numel() for p in dual.parameters())
    n_single = sum(p.numel() for p in single.parameters())
    n_encoder = sum(p.numel() for p in dual.shared.parameters())
    assert n_dual == n_single + (n_single - n_encoder)
    dual.train()
    out = dual.forward_with_aux(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    (out["large"]["out"].mean() + out["small"]["out"].mean()).backward()
    assert dual.shared.conv_0.conv_0.conv.weight.grad.abs().sum() > 0
    assert dual.large.classifier.weight.grad.abs().sum() > 0 and dual.small.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("dual", "loss"), [(True, "dsm"), (True, "dice"), (False, "dice"), (False, "cbce")])
def test_unet_trains_with_the_project_losses(dual, loss):
    net = _tiny(dual=dual).train()
    criterion = build_exudate_loss(loss, dual=dual)
    x, y = torch.randn(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.9).float()
    value = criterion(net.forward_with_aux(x, x), y, y) if dual else criterion(net.forward_with_aux(x), y)
    assert torch.isfinite(value)
    value.backward()


@pytest.mark.parametrize("dual", [True, False])
def test_unet_eval_traces_to_torchscript(dual):
    net = _tiny(dual=dual).eval()
    x = torch.randn(1, 3, 48, 32)
    traced = torch.jit.trace(net, x)
    torch.testing.assert_close(traced(x), net(x))


def test_unet_rejects_backbone_only_settings():
    with pytest.raises(ValueError, match="pretrained"):
        build_exudate_network("unet", pretrained_path="/nonexistent/resnet.pth")
    # no layer4 and no pooled branch: the ResNet recipe of a dataset overlay changes nothing
    recipe = build_exudate_network("unet", width=4, branch_layer4_blocks=1, pooling_norm="group")
    assert recipe.state_dict().keys() == build_exudate_network("unet", width=4).state_dict().keys()
    with pytest.raises(ValueError, match="width"):
        build_exudate_network("unet", width=0)


@pytest.mark.parametrize("dual", [False, True])
def test_head_prior_sets_the_untrained_foreground_probability(dual):
    torch.manual_seed(0)
    net = _tiny(dual=dual, head_prior=0.01)
    classifiers = [net.large.classifier, net.small.classifier] if dual else [net.branch.classifier]
    for classifier in classifiers:
        assert torch.allclose(classifier.bias, torch.full_like(classifier.bias, -4.59512), atol=1e-5)
    # the option changes nothing but the classifier biases: seeded weights are otherwise those of the default
    torch.manual_seed(0)
    default = _tiny(dual=dual).state_dict()
    torch.manual_seed(0)
    prior = _tiny(dual=dual, head_prior=0.01).state_dict()
    assert default.keys() == prior.keys()
    for key in default:
        assert torch.equal(default[key], prior[key]) is (not key.endswith("classifier.bias")), key


def test_head_prior_is_checked():
    with pytest.raises(ValueError, match="head_prior must lie in"):
        _tiny(dual=True, head_prior=1.0)
    with pytest.raises(ValueError, match="arch 'unet' only"):
        build_exudate_network("pspnet", dual=True, width=8, layers=(1, 1, 1, 1), head_prior=0.01)
