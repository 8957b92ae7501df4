"""Tests of the PSPNet, auxiliary, ASPP and HED heads."""

import pytest
import torch
from torch import nn

from monai_exudate.networks import ASPPHead, AuxHead, HEDHead, PSPHead, build_exudate_network


def _check_init(head: nn.Module, skip: tuple[nn.Module, ...] = ()) -> None:
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d) and m not in skip]
    weights = torch.cat([m.weight.detach().flatten() for m in convs])
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.01, rel=0.1)
    for m in convs:
        if m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    for m in head.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.count_nonzero(m.bias) == 0


def test_psp_head_shape_width_and_init():
    torch.manual_seed(0)
    head = PSPHead(128, 2, dropout=0.3).eval()
    assert head.stages[0][1].out_channels == 32
    assert head.bottleneck[0].in_channels == 128 + 4 * 32
    assert head.bottleneck[0].out_channels == 32
    assert head.bottleneck[3].p == 0.3
    assert [s[0].output_size for s in head.stages] == [1, 2, 3, 6]
    assert head(torch.randn(1, 128, 9, 7)).shape == (1, 2, 9, 7)
    _check_init(head)


def test_full_size_head_widths():
    with torch.device("meta"):
        psp, aux, aspp = PSPHead(2048, 1), AuxHead(1024, 1), ASPPHead(2048, 1)
    assert psp.stages[0][1].out_channels == 512 and psp.bottleneck[0].in_channels == 4096
    assert psp.bottleneck[0].out_channels == 512
    assert aux.block[0].out_channels == 256
    assert [b[0].out_channels for b in aspp.branches] == [256] * 4
    assert aspp.project[0][0].in_channels == 5 * 256


def test_aux_head_shape_and_init():
    torch.manual_seed(0)
    head = AuxHead(256, 1).eval()
    assert head(torch.randn(2, 256, 5, 6)).shape == (2, 1, 5, 6)
    _check_init(head)


def test_aspp_head_rates_shape_and_init():
    torch.manual_seed(0)
    head = ASPPHead(128, 1, rates=(12, 24, 36)).eval()
    assert [b[0].dilation for b in head.branches] == [(1, 1), (12, 12), (24, 24), (36, 36)]
    assert head(torch.randn(1, 128, 9, 7)).shape == (1, 1, 9, 7)
    _check_init(head)


@pytest.mark.parametrize("head", [PSPHead(16, 1), ASPPHead(16, 1)])
def test_pooling_heads_need_batch_of_two_in_training(head):
    head.train()
    with pytest.raises(ValueError, match="batch of at least 2"):
        head(torch.randn(1, 16, 4, 4))
    assert head(torch.randn(2, 16, 4, 4)).shape == (2, 1, 4, 4)
    head.eval()
    assert head(torch.randn(1, 16, 4, 4)).shape == (1, 1, 4, 4)


def test_hed_head_sides_and_fusion():
    torch.manual_seed(0)
    channels = (32, 64, 128, 256, 256)
    head = HEDHead(channels, 1)
    _check_init(head, skip=(head.fuse,))
    assert torch.allclose(head.fuse.weight, torch.full((1, 5, 1, 1), 0.2))
    assert torch.count_nonzero(head.fuse.bias) == 0
    features = [torch.randn(2, c, 16 // 2**i + 1, 12 // 2**i + 1) for i, c in enumerate(channels)]
    out, sides = head(features, (17, 13))
    assert out.shape == (2, 1, 17, 13)
    assert [tuple(s.shape) for s in sides] == [(2, 1, 17, 13)] * 5
    # the initial fusion is the average of the side logits
    assert torch.allclose(out, torch.stack(sides).mean(0), atol=1e-6)


def test_hed_fusion_averages_per_class():
    head = HEDHead((4, 4, 4, 4, 4), 2)
    weight = head.fuse.weight[:, :, 0, 0]
    assert torch.allclose(weight[0], torch.tensor([0.2, 0.0] * 5))
    assert torch.allclose(weight[1], torch.tensor([0.0, 0.2] * 5))
    with pytest.raises(ValueError, match="5 feature maps"):
        head([torch.randn(1, 4, 2, 2)] * 4, (2, 2))


@pytest.mark.parametrize("head_class", [PSPHead, ASPPHead])
def test_group_norm_in_the_pooled_branches_trains_on_one_image(head_class):
    """The authors normalise the pooled branches with GroupNorm (one group, no activation) and train on one image
    per GPU; BatchNorm there cannot (one value per channel), and its error says what allows it."""
    head = head_class(16, 1, pooling_norm="group").train()
    out = head(torch.randn(1, 16, 6, 6))
    assert out.shape == (1, 1, 6, 6)
    out.sum().backward()  # a finite gradient reaches the pooled branches' convolutions
    pooled = [m for m in head.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert pooled and all(m.num_groups == 1 for m in pooled)
    assert not any(isinstance(m, torch.nn.ReLU) for m in _pooled_branches(head))
    with pytest.raises(ValueError, match="pooling_norm 'group' trains on one image"):
        head_class(16, 1).train()(torch.randn(1, 16, 6, 6))
    with pytest.raises(ValueError, match="pooling_norm must be one of"):
        head_class(16, 1, pooling_norm="layer")


def _pooled_branches(head: torch.nn.Module) -> list[torch.nn.Module]:
    branches = list(head.stages) if isinstance(head, PSPHead) else [head.image_pool]
    return [m for branch in branches for m in branch.modules()]


def test_group_norm_reaches_the_networks_and_changes_nothing_where_nothing_pools():
    for arch in ("pspnet", "deeplabv3"):
        for dual in (True, False):
            net = build_exudate_network(arch, dual, width=8, layers=(1, 1, 1, 2), pooling_norm="group").train()
            x = torch.randn(1, 3, 48, 32)
            outputs = net.forward_with_aux(x, x.flip(-1)) if dual else net.forward_with_aux(x)
            assert outputs["large"]["out"].shape[0] == 1 if dual else outputs["out"].shape[0] == 1
            assert any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    for arch in ("unet", "hed"):
        net = build_exudate_network(arch, True, width=8, pooling_norm="group")
        assert not any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    with pytest.raises(ValueError, match="pooling_norm must be one of"):
        build_exudate_network("hed", True, width=8, pooling_norm="instance")
