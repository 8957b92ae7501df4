"""Tests of the VGG16 backbone."""

import pytest
import torch

from monai_exudate.networks import VGG16Backbone
from monai_exudate.networks.vgg import VGG16_STAGE_ENDS, run_vgg_stages

_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def test_full_size_matches_torchvision_vgg16_features():
    with torch.device("meta"):
        net = VGG16Backbone()
    expected = {f"features.{i}.{name}" for i in _CONV_INDICES for name in ("weight", "bias")}
    assert set(net.state_dict()) == expected
    # conv part of torchvision vgg16
    assert sum(p.numel() for p in net.parameters()) == 14_714_688
    assert net.features[28].weight.shape == (512, 512, 3, 3)


def test_stage_outputs_on_odd_input():
    torch.manual_seed(0)
    net = VGG16Backbone(width=4)
    with torch.no_grad():
        stages = net(torch.randn(2, 3, 65, 49))
    assert net.out_channels == (4, 8, 16, 32, 32)
    assert [s.shape[1] for s in stages] == list(net.out_channels)  # one entry per returned feature
    # ceil-mode pooling keeps the borders of odd sizes
    assert [tuple(s.shape) for s in stages] == [
        (2, 4, 65, 49),
        (2, 8, 33, 25),
        (2, 16, 17, 13),
        (2, 32, 9, 7),
        (2, 32, 5, 4),
    ]


def test_slices_run_the_same_stages():
    torch.manual_seed(0)
    net = VGG16Backbone(width=4)
    x = torch.randn(1, 3, 32, 40)
    split = VGG16_STAGE_ENDS[2] + 1
    with torch.no_grad():
        full = net(x)
        head = run_vgg_stages(net.features[:split], x)
        tail = run_vgg_stages(net.features[split:], head[-1])
    assert len(head) == 3 and len(tail) == 2
    for a, b in zip(full, head + tail, strict=True):
        assert torch.equal(a, b)


def test_invalid_width_raises():
    with pytest.raises(ValueError, match="width"):
        VGG16Backbone(width=0)
