"""Tests of the dilated ResNet backbone."""

import pytest
import torch

from monai_exudate.networks import Bottleneck, DilatedResNet


def test_full_size_matches_torchvision_resnet50_keys_and_size():
    with torch.device("meta"):
        net = DilatedResNet()
    keys = set(net.state_dict())
    expected = {
        "conv1.weight",
        "bn1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_mean",
        "layer3.5.bn3.bias",
        "layer4.0.downsample.0.weight",
        "layer4.2.conv3.weight",
    }
    assert expected <= keys
    assert not any(k.startswith("fc.") for k in keys)
    # torchvision resnet50: 320 state_dict entries and 25,557,032 parameters, of which fc holds 2 / 2,049,000
    assert len(keys) == 318
    assert sum(p.numel() for p in net.parameters()) == 25_557_032 - 2_049_000


def test_stage_shapes_output_stride_8_on_odd_input():
    torch.manual_seed(0)
    net = DilatedResNet(layers=(1, 1, 1, 1), base_width=8).eval()
    x = torch.randn(2, 3, 65, 49)
    with torch.no_grad():
        stem = net.forward_stem(x)
        features = net(x)
    assert stem.shape == (2, 8, 17, 13)
    assert [tuple(f.shape) for f in features] == [(2, 32, 17, 13), (2, 64, 9, 7), (2, 128, 9, 7), (2, 256, 9, 7)]
    assert net.out_channels == (32, 64, 128, 256)
    assert [f.shape[1] for f in features] == list(net.out_channels)  # one entry per returned feature


def test_last_two_stages_are_dilated_not_strided():
    net = DilatedResNet(layers=(1, 1, 2, 2), base_width=4)
    assert net.layer2[0].conv2.stride == (2, 2)
    assert net.layer3[0].downsample[0].stride == (1, 1)
    assert net.layer4[0].downsample[0].stride == (1, 1)
    for layer, dilation in ((net.layer3, 2), (net.layer4, 4)):
        for block in layer:
            assert block.conv2.stride == (1, 1)
            assert block.conv2.dilation == (dilation, dilation)
            assert block.conv2.padding == (dilation, dilation)


def test_bottleneck_shapes():
    x = torch.randn(1, 16, 5, 7)
    same = Bottleneck(16, 4)
    assert same.downsample is None
    assert same(x).shape == (1, 16, 5, 7)
    projected = Bottleneck(16, 8, stride=2, downsample=torch.nn.Conv2d(16, 32, 1, stride=2))
    y = projected(x)
    assert y.shape == (1, 32, 3, 4)
    assert (y >= 0).all()


@pytest.mark.parametrize(
    "kwargs, word",
    [({"layers": (1, 1, 1)}, "layers"), ({"layers": (1, 0, 1, 1)}, "layers"), ({"base_width": 0}, "base_width")],
)
def test_invalid_arguments_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DilatedResNet(**kwargs)
