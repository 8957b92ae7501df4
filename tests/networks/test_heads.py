"""Tests of the PSPNet, auxiliary, ASPP and HED heads."""

import pytest
import torch
from torch import nn

from monai_exudate.networks import ASPPHead, AuxHead, HEDHead, PSPHead


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
