"""Tests of loading local torchvision-format checkpoints into the backbones and networks."""

import pytest
import torch

from monai_exudate.networks import (
    HED,
    DilatedResNet,
    PSPNet,
    VGG16Backbone,
    build_exudate_network,
    load_pretrained_backbone,
)

TINY_RESNET = {"layers": (1, 1, 1, 2), "base_width": 4}


def _randomised(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict with every floating tensor (BatchNorm statistics included) set to fresh random values."""
    torch.manual_seed(1)
    return {k: torch.rand_like(v) + 0.5 if v.is_floating_point() else v.clone() for k, v in module.state_dict().items()}


def _assert_loaded(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str = "") -> None:
    own = module.state_dict()
    for key, value in state.items():
        if not key.startswith(("fc.", "classifier.")) and not key.endswith("num_batches_tracked"):
            assert torch.equal(own[prefix + key], value), key


def test_resnet_round_trip_with_wrapper_and_classifier_keys(tmp_path):
    state = _randomised(DilatedResNet(**TINY_RESNET))
    checkpoint = dict(state, **{"fc.weight": torch.zeros(10, 128), "fc.bias": torch.zeros(10)})
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": checkpoint, "epoch": 3}, path)
    net = DilatedResNet(**TINY_RESNET, pretrained_path=str(path))
    _assert_loaded(net, state)


def test_vgg_round_trip_with_model_wrapper_and_module_prefix(tmp_path):
    state = _randomised(VGG16Backbone(width=4))
    checkpoint = {"module." + k: v for k, v in state.items()}
    checkpoint["module.classifier.0.weight"] = torch.zeros(3, 3)
    path = tmp_path / "vgg.pth"
    torch.save({"model": checkpoint}, path)
    _assert_loaded(VGG16Backbone(width=4, pretrained_path=str(path)), state)


def test_checkpoint_without_batchnorm_counters_loads(tmp_path):
    state = _randomised(DilatedResNet(**TINY_RESNET))
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    _assert_loaded(load_pretrained_backbone(DilatedResNet(**TINY_RESNET), path), state)


def test_mismatched_shapes_raise_naming_file_and_keys(tmp_path):
    path = tmp_path / "wide_resnet.pth"
    torch.save(DilatedResNet(layers=(1, 1, 1, 2), base_width=8).state_dict(), path)
    with pytest.raises(ValueError, match="mismatched shapes") as info:
        DilatedResNet(**TINY_RESNET, pretrained_path=str(path))
    message = str(info.value)
    assert "wide_resnet.pth" in message
    assert "conv1.weight (8, 3, 7, 7) vs (4, 3, 7, 7)" in message
    assert "more)" in message  # long lists are cut short


def test_missing_and_unexpected_keys_raise(tmp_path):
    state = DilatedResNet(**TINY_RESNET).state_dict()
    del state["layer4.1.conv2.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="broken.pth") as info:
        DilatedResNet(**TINY_RESNET, pretrained_path=str(path))
    assert "missing keys: layer4.1.conv2.weight" in str(info.value)
    assert "unexpected keys: layer5.0.conv1.weight" in str(info.value)


def test_vgg_checkpoint_into_resnet_raises(tmp_path):
    path = tmp_path / "vgg16.pth"
    torch.save(VGG16Backbone(width=4).state_dict(), path)
    with pytest.raises(ValueError, match="vgg16.pth.*does not fit DilatedResNet"):
        DilatedResNet(**TINY_RESNET, pretrained_path=str(path))


def test_non_strict_shapes_skip_mismatched_keys(tmp_path):
    state = _randomised(DilatedResNet(**TINY_RESNET))
    path = tmp_path / "rgb.pth"
    torch.save(state, path)
    net = DilatedResNet(in_channels=4, **TINY_RESNET)
    before = net.conv1.weight.detach().clone()
    load_pretrained_backbone(net, path, strict_shapes=False)
    assert torch.equal(net.conv1.weight, before)
    assert torch.equal(net.layer4[1].conv3.weight, state["layer4.1.conv3.weight"])


def test_bad_files_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        DilatedResNet(**TINY_RESNET, pretrained_path=str(tmp_path / "nowhere.pth"))
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="list.pth.*not a state_dict"):
        load_pretrained_backbone(DilatedResNet(**TINY_RESNET), path)


def test_networks_load_backbone_into_shared_and_both_branches(tmp_path):
    state = _randomised(DilatedResNet(**TINY_RESNET))
    path = tmp_path / "resnet.pth"
    torch.save(state, path)
    _assert_loaded(PSPNet(**TINY_RESNET, pretrained_path=str(path)), state, prefix="backbone.")
    dual = build_exudate_network(
        "deeplabv3", width=4, layers=(1, 1, 1, 2), pretrained_path=str(path), branch_layer4_blocks=1
    )
    own = dual.state_dict()
    for key, value in state.items():
        if key.startswith("layer4.1."):  # the duplicated block starts from the checkpoint in both branches
            assert torch.equal(own["large." + key], value) and torch.equal(own["small." + key], value)
        elif not key.endswith("num_batches_tracked"):
            assert torch.equal(own["shared." + key], value)


def test_hed_networks_load_vgg(tmp_path):
    state = _randomised(VGG16Backbone(width=4))
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    _assert_loaded(HED(width=4, pretrained_path=str(path)), state, prefix="backbone.")
    own = build_exudate_network("hed", width=4, pretrained_path=str(path)).state_dict()
    assert torch.equal(own["shared.features.14.weight"], state["features.14.weight"])
    for branch in ("large", "small"):
        assert torch.equal(own[f"{branch}.features.17.weight"], state["features.17.weight"])
        assert torch.equal(own[f"{branch}.features.28.bias"], state["features.28.bias"])
