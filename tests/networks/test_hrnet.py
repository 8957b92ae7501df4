"""Tests of the HRNetV2 backbone: output geometry, presets, checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from monai_exudate.networks.hrnet import HRNetV2, load_hrnet_checkpoint

TINY = {"width": 4, "num_blocks": 1, "num_modules": 1, "stage1_channels": 8, "stem_channels": 8}


def test_output_is_15w_channels_at_quarter_resolution():
    net = HRNetV2(**TINY)
    assert net.out_channels == 60
    out = net(torch.randn(2, 3, 64, 48))
    assert out.shape == (2, 60, 16, 12)
    # Sizes that are not multiples of 32 still give ceil(H / 4) x ceil(W / 4).
    assert net(torch.randn(1, 3, 36, 52)).shape == (1, 60, 9, 13)


def test_in_channels_and_gradient():
    net = HRNetV2(in_channels=1, **TINY)
    net(torch.randn(2, 1, 32, 32)).square().mean().backward()
    assert net.conv1.weight.grad is not None and net.conv1.weight.grad.abs().sum() > 0
    assert net.stage4[0].branches[3][0].conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("width, channels", [(18, 270), (48, 720)])
def test_presets(width, channels):
    net = HRNetV2(width=width)
    assert net.out_channels == channels
    assert [len(net.stage2), len(net.stage3), len(net.stage4)] == [1, 4, 3]
    assert len(net.layer1) == 4 and len(net.stage4[0].branches[0]) == 4
    assert net.stage4[0].branches[3][0].conv1.out_channels == 8 * width


def test_checkpoint_key_layout():
    keys = set(HRNetV2(**TINY).state_dict())
    for key in (
        "conv1.weight",
        "bn2.running_var",
        "layer1.0.downsample.0.weight",
        "transition1.0.0.weight",
        "transition1.1.0.0.weight",
        "transition2.2.0.0.weight",
        "transition3.3.0.1.weight",
        "stage2.0.branches.1.0.conv2.weight",
        "stage3.0.fuse_layers.0.2.0.weight",
        "stage4.0.fuse_layers.3.0.0.0.weight",
        "stage4.0.fuse_layers.3.0.2.1.running_mean",
    ):
        assert key in keys, key


def test_load_wrapped_checkpoint(tmp_path):
    source = HRNetV2(**TINY)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["classifier.weight"] = torch.zeros(10, 4)
    path = tmp_path / "hrnet.pth"
    torch.save({"state_dict": state}, path)
    net = HRNetV2(pretrained_path=str(path), **TINY)
    for name, value in source.state_dict().items():
        assert torch.equal(net.state_dict()[name], value), name
    missing, unexpected = load_hrnet_checkpoint(HRNetV2(**TINY), str(path))
    assert missing == [] and unexpected == ["classifier.weight"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        HRNetV2(pretrained_path=str(tmp_path / "absent.pth"), **TINY)
    wrong_width = tmp_path / "wide.pth"
    torch.save(HRNetV2(**{**TINY, "width": 6}).state_dict(), wrong_width)
    with pytest.raises(ValueError, match="wide.pth.*shape"):
        HRNetV2(pretrained_path=str(wrong_width), **TINY)
    unrelated = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, unrelated)
    with pytest.raises(ValueError, match="other.pth.*matches only 0"):
        HRNetV2(pretrained_path=str(unrelated), **TINY)
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in HRNetV2(**TINY).state_dict().items() if k.startswith("stage4")}, partial)
    with pytest.raises(ValueError, match="partial.pth"):
        HRNetV2(pretrained_path=str(partial), **TINY)


def test_bad_sizes():
    with pytest.raises(ValueError, match="num_blocks"):
        HRNetV2(width=4, num_blocks=(1, 1))
    with pytest.raises(ValueError, match="num_modules"):
        HRNetV2(width=4, num_modules=0)
