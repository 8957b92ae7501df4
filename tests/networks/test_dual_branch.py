"""Tests of the single- and dual-branch PSPNet, DeepLabv3 and HED networks and of the factory."""

import pytest
import torch
from torch import nn

from monai_exudate.networks import HED, DeepLabV3, DualBranchNet, PSPNet, build_exudate_network

ARCHS = ("pspnet", "deeplabv3", "hed")
TINY_LAYERS = (1, 1, 1, 1)


def _tiny(arch: str, dual: bool, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    width = 4 if arch == "hed" else 8
    return build_exudate_network(arch, dual=dual, width=width, layers=TINY_LAYERS, **kwargs)


def _check_branch(outputs: dict, arch: str, shape: tuple[int, ...]) -> None:
    expected = {"pspnet": {"out", "aux"}, "deeplabv3": {"out"}, "hed": {"out", "side"}}[arch]
    assert set(outputs) == expected
    assert outputs["out"].shape == shape
    if arch == "pspnet":
        assert outputs["aux"].shape == shape
    if arch == "hed":
        assert len(outputs["side"]) == 5 and all(s.shape == shape for s in outputs["side"])


@pytest.mark.parametrize("arch", ARCHS)
def test_single_branch_train_and_eval_outputs(arch):
    net = _tiny(arch, dual=False, out_channels=2)
    assert isinstance(net, {"pspnet": PSPNet, "deeplabv3": DeepLabV3, "hed": HED}[arch])
    x = torch.randn(2, 3, 65, 49)
    _check_branch(net.train().forward_with_aux(x), arch, (2, 2, 65, 49))
    with torch.no_grad():
        logits = net.eval()(x)
        train_logits = net.train()(x)
    # forward returns the logits themselves in either mode: values outside [0, 1] and no activation
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 2, 65, 49)
    assert isinstance(train_logits, torch.Tensor) and train_logits.shape == (2, 2, 65, 49)
    if arch == "hed":  # no BatchNorm or dropout: the same logits in both modes
        torch.testing.assert_close(logits, train_logits)


@pytest.mark.parametrize("arch", ARCHS)
def test_dual_branch_train_and_eval_outputs(arch):
    net = _tiny(arch, dual=True)
    assert isinstance(net, DualBranchNet)
    x, x_small = torch.randn(2, 3, 65, 49), torch.randn(3, 3, 40, 56)
    outputs = net.train().forward_with_aux(x, x_small)
    assert set(outputs) == {"large", "small"}
    _check_branch(outputs["large"], arch, (2, 1, 65, 49))
    _check_branch(outputs["small"], arch, (3, 1, 40, 56))
    with torch.no_grad():
        logits = net.eval()(x)
    # eval mode: both branches' logits stacked on the channels, large first
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 2, 65, 49)


def test_dual_branch_input_errors():
    net = _tiny("deeplabv3", dual=True)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="x_small"):
        net.train().forward_with_aux(x, torch.randn(3, 32, 32))
    with pytest.raises(TypeError):  # forward takes one batch: both branches see it
        net.eval()(x, x)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net.eval()(torch.randn(3, 32, 32))


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_output_stacks_the_branch_logits(arch):
    net = _tiny(arch, dual=True, dropout=0.0)
    x = torch.randn(2, 3, 37, 45)
    # two inputs (shared stages run once per input) with frozen BatchNorm statistics, i.e. eval behaviour
    net.train()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        branches = net.forward_with_aux(x, x)
        expected = torch.cat([branches["large"]["out"], branches["small"]["out"]], dim=1)
        logits = net.eval()(x)
        shared_once = net.forward_with_aux(x)
    assert torch.allclose(logits, expected, atol=1e-6)
    assert torch.allclose(shared_once["small"]["out"], branches["small"]["out"], atol=1e-6)
    assert not torch.allclose(branches["large"]["out"], branches["small"]["out"])


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_stages_are_one_module(arch):
    net = _tiny(arch, dual=True)
    shared = {id(p) for p in net.shared.parameters()}
    large = {id(p) for p in net.large.parameters()}
    small = {id(p) for p in net.small.parameters()}
    assert shared and not shared & large and not shared & small and not large & small
    assert len(list(net.parameters())) == len(shared) + len(large) + len(small)
    assert net.large.head is not net.small.head
    if arch == "hed":
        assert max(int(k) for k in net.shared.features._modules) == 15  # stages 1-3
        assert min(int(k) for k in net.large.features._modules) == 16  # stages 4-5
        assert len(net.large.head.side) == 5
    else:
        assert hasattr(net.shared, "layer3") and len(net.shared.layer4) == 0
        assert net.large.layer4 is not net.small.layer4 and len(net.large.layer4) == TINY_LAYERS[3]
        assert (net.large.aux_head is not None) == (arch == "pspnet")


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_both_branches_and_shared_stages(arch):
    net = _tiny(arch, dual=True).train()
    outputs = net.forward_with_aux(torch.randn(2, 3, 33, 31), torch.randn(2, 3, 30, 34))
    outputs["small"]["out"].square().mean().backward()
    assert all(p.grad is None for p in net.large.parameters())
    first_conv = net.shared.features[0] if arch == "hed" else net.shared.conv1
    assert first_conv.weight.grad.abs().sum() > 0
    net.zero_grad(set_to_none=True)

    outputs = net.forward_with_aux(torch.randn(2, 3, 33, 31), torch.randn(2, 3, 30, 34))
    loss = sum(
        t.square().mean()
        for branch in outputs.values()
        for value in branch.values()
        for t in (value if isinstance(value, list) else [value])
    )
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
    for branch in (net.large, net.small):
        classifier = branch.head.fuse if arch == "hed" else branch.head.classifier
        assert classifier.weight.grad.abs().sum() > 0


def test_partially_shared_layer4():
    net = build_exudate_network("pspnet", width=4, layers=(1, 1, 1, 3), branch_layer4_blocks=1)
    assert list(net.shared.layer4._modules) == ["0", "1"]
    assert list(net.large.layer4._modules) == ["2"] and list(net.small.layer4._modules) == ["2"]
    assert torch.equal(net.large.layer4[0].conv2.weight, net.small.layer4[0].conv2.weight)
    outputs = net.train().forward_with_aux(torch.randn(2, 3, 30, 30), torch.randn(2, 3, 30, 30))
    assert outputs["small"]["out"].shape == (2, 1, 30, 30)
    with pytest.raises(ValueError, match="branch_layer4_blocks"):
        build_exudate_network("pspnet", width=4, layers=(1, 1, 1, 3), branch_layer4_blocks=4)
    # HED has no layer4: a dataset overlay's ResNet sharing leaves it as it is
    hed = build_exudate_network("hed", width=4, branch_layer4_blocks=1)
    assert hed.state_dict().keys() == build_exudate_network("hed", width=4).state_dict().keys()
    with pytest.raises(ValueError, match="branch_layer4_blocks"):
        build_exudate_network("pspnet", dual=False, width=4, layers=(1, 1, 1, 3), branch_layer4_blocks=1)


@pytest.mark.parametrize("dual", [False, True])
@pytest.mark.parametrize("arch", ARCHS)
def test_jit_trace_matches_eager_in_eval(arch, dual):
    net = _tiny(arch, dual=dual).eval()
    x = torch.randn(1, 3, 33, 25)
    other = torch.randn(2, 3, 20, 28)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        traced = torch.jit.trace(net, x, check_trace=False)  # compared below
        assert torch.allclose(traced(x), net(x), atol=1e-6)
        # sizes are recorded symbolically: the trace also serves other image and batch sizes
        assert torch.allclose(traced(other), net(other), atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_bfloat16_autocast(arch):
    net = _tiny(arch, dual=True)
    x = torch.randn(2, 3, 41, 35)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = net.train().forward_with_aux(x, x)
        with torch.no_grad():
            logits = net.eval()(x)
    assert outputs["large"]["out"].shape == (2, 1, 41, 35) and torch.isfinite(outputs["small"]["out"]).all()
    assert logits.shape == (2, 2, 41, 35) and torch.isfinite(logits).all()


def test_unknown_arch_raises():
    with pytest.raises(ValueError, match="segformer"):
        build_exudate_network("segformer")


def test_factory_accepts_config_lists():
    net = build_exudate_network("deeplabv3", dual=False, width=4, layers=[1, 1, 2, 1], dropout=0.2)
    assert len(net.backbone.layer3) == 2 and net.head.project[1].p == 0.2


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "arch, kwargs, low, high",
    [
        ("pspnet", {}, 1.7, 1.9),
        ("deeplabv3", {}, 1.7, 1.9),
        ("hed", {}, 1.8, 2.0),
        # only the last layer4 block per branch, as in the authors' released code (paper: ~1.5x)
        ("pspnet", {"branch_layer4_blocks": 1}, 1.4, 1.7),
        ("deeplabv3", {"branch_layer4_blocks": 1}, 1.4, 1.7),
    ],
)
def test_full_size_parameter_ratio(arch, kwargs, low, high):
    with torch.device("meta"):  # full-size structure without allocating or initialising weights
        single = _count(build_exudate_network(arch, dual=False))
        dual = _count(build_exudate_network(arch, dual=True, **kwargs))
    assert low < dual / single < high


@pytest.mark.parametrize("arch", ARCHS)
def test_full_size_networks_run_on_meta_device(arch):
    with torch.device("meta"):
        net = build_exudate_network(arch).train()
        outputs = net.forward_with_aux(torch.empty(2, 3, 97, 130), torch.empty(2, 3, 64, 64))
        logits = net.eval()(torch.empty(1, 3, 97, 130))
    assert outputs["large"]["out"].shape == (2, 1, 97, 130) and outputs["small"]["out"].shape == (2, 1, 64, 64)
    assert logits.shape == (1, 2, 97, 130)


@pytest.mark.parametrize("arch", ["pspnet", "deeplabv3"])
def test_shared_auxiliary_head_serves_both_branches(arch):
    """The authors' dual ResNet networks: one aux classifier on the shared layer3, trained by both branches."""
    net = _tiny(arch, True, shared_aux_head=True)
    keys = net.state_dict().keys()
    assert any(k.startswith("aux_head.") for k in keys)
    assert not any(".aux_head." in k for k in keys)  # none left in the branches
    net.train()
    out = net.forward_with_aux(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    assert out["large"]["aux"].shape == out["small"]["aux"].shape == (2, 1, 32, 32)
    out["small"]["aux"].sum().backward()
    assert all(p.grad is not None for p in net.aux_head.parameters())
    net.eval()
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 2, 32, 32)  # eval output unchanged: the two branches' logits
    # without it (bundles before 0.7.0): PSPNet keeps one aux head per branch, DeepLabv3 none
    per_branch = _tiny(arch, True).state_dict().keys()
    assert any(k.startswith("large.aux_head.") for k in per_branch) == (arch == "pspnet")
    assert not any(k.startswith("aux_head.") for k in per_branch)
