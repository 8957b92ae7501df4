"""Tests of the HRDecoder network: output contract, crop geometry and alignment, fusion, tracing, tiling."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from monai.inferers import SlidingWindowInferer
from torch import nn

from monai_exudate.losses.hrdecoder_loss import HRDecoderLoss, crop_hr_targets
from monai_exudate.networks.hrdecoder import HRDecoder, build_hrdecoder, window_boxes

TINY = {"width": 4, "num_blocks": 1, "num_modules": 1, "stage1_channels": 8, "stem_channels": 8, "head_channels": 8}


def tiny(**kwargs) -> HRDecoder:
    torch.manual_seed(0)
    return build_hrdecoder(hr_scale=32, **{**TINY, **kwargs})


class PoolBackbone(nn.Module):
    """Deterministic stand-in backbone: 4x4 average pooling (features at 1/4 of its input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 4)


def coordinates(height: int, width: int) -> torch.Tensor:
    """``[1, 2, H, W]`` image whose channels are the row and column index of each pixel."""
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    return torch.stack([ys, xs])[None]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_training_output_contract():
    net = tiny(num_crops=3).train()
    out = net.forward_with_aux(torch.randn(2, 3, 64, 64))
    assert out["fused"].shape == out["lr"].shape == (2, 4, 64, 64)
    assert out["hr"].shape == (6, 4, 8, 8)
    assert out["hr_boxes"].shape == (3, 4) and out["hr_boxes"].dtype == torch.long


def test_eval_returns_the_fused_logits():
    net = tiny().eval()
    with torch.no_grad():
        logits = net(torch.randn(2, 3, 64, 48))
    # logits, not probabilities: the per-lesion sigmoid is a post-processing step
    assert logits.shape == (2, 4, 64, 48)
    assert logits.min() < 0 or logits.max() > 1


def test_box_geometry():
    net = HRDecoder(
        PoolBackbone(), backbone_channels=3, hr_scale=64, num_crops=4, generator=torch.Generator().manual_seed(1)
    )
    sides = set()
    for _ in range(200):
        boxes = net.sample_boxes(160, 224)
        side = boxes[:, 2] - boxes[:, 0]
        # One ratio per call: every box has the same square side.
        assert torch.all(side == side[0]) and torch.equal(boxes[:, 3] - boxes[:, 1], side)
        assert torch.all(boxes % 8 == 0)
        assert torch.all(boxes[:, :2] >= 0) and torch.all(boxes[:, 2] <= 160) and torch.all(boxes[:, 3] <= 224)
        # side = round(64 * r / 8) * 8 with r in [0.75, 1.25].
        assert 48 <= side[0] <= 80
        sides.add(int(side[0]))
    assert sides == {48, 56, 64, 72, 80}


def test_boxes_reproducible_and_clamped():
    def make(seed: int) -> HRDecoder:
        gen = torch.Generator().manual_seed(seed)
        return HRDecoder(PoolBackbone(), backbone_channels=3, hr_scale=64, crop_jitter=(1.25, 1.25), generator=gen)

    assert torch.equal(make(3).sample_boxes(128, 128), make(3).sample_boxes(128, 128))
    # The image is smaller than the 80-pixel box: the side is clamped to the image, still a multiple of 8.
    boxes = make(0).sample_boxes(48, 72)
    assert torch.all(boxes[:, 2] - boxes[:, 0] == 48) and torch.all(boxes[:, 0] == 0) and torch.all(boxes[:, 3] <= 72)


def test_hr_crop_aligned_with_label_crop():
    # Features encode pixel coordinates, the head is the identity: the decoded HR crop resized to the box
    # must reproduce the label crop, exactly away from the box border where bilinear resizing clamps.
    net = HRDecoder(PoolBackbone(), num_classes=2, backbone_channels=2, hr_scale=32, num_crops=4).train()
    net.head = nn.Identity()
    image = coordinates(64, 96)
    torch.manual_seed(5)
    for _ in range(5):
        out = net.forward_with_aux(image)
        logits, crops = crop_hr_targets(out["hr"], image, out["hr_boxes"])
        assert logits.shape == crops.shape
        y0, x0 = out["hr_boxes"][:, 0], out["hr_boxes"][:, 1]
        assert torch.equal(crops[:, 0, 0, 0], y0.float()) and torch.equal(crops[:, 1, 0, 0], x0.float())
        error = (logits - crops).abs()
        assert error[..., 8:-8, 8:-8].max() < 1e-3
        assert error.max() <= 8


def test_fusion_is_average_of_lr_and_window_logits():
    # A stand-in backbone and a head with spatial context make HR window logits differ from the LR logits.
    torch.manual_seed(0)
    for height, width in [(64, 64), (48, 64)]:
        net = HRDecoder(PoolBackbone(), num_classes=2, backbone_channels=3, hr_scale=32).eval()
        net.head = nn.Conv2d(3, 2, kernel_size=3, padding=1)
        x = torch.rand(1, 3, height, width)
        with torch.no_grad():
            feats = F.avg_pool2d(resize(x, (height // 2, width // 2)), 4)
            lr4 = resize(net.head(feats), (height // 4, width // 4))
            hr_sum = torch.zeros_like(lr4)
            count = torch.zeros(1, 1, height // 4, width // 4)
            starts_y = [0, 32] if height == 64 else [0, 16]
            for y0 in starts_y:
                for x0 in [0, 32]:
                    crop = feats[:, :, y0 // 8 : y0 // 8 + 4, x0 // 8 : x0 // 8 + 4]
                    hr_sum[:, :, y0 // 4 : y0 // 4 + 8, x0 // 4 : x0 // 4 + 8] += net.head(resize(crop, (8, 8)))
                    count[:, :, y0 // 4 : y0 // 4 + 8, x0 // 4 : x0 // 4 + 8] += 1
            expected = resize(0.5 * (lr4 + hr_sum / count), (height, width))
            got = net(x)
            lr_only = resize(net.head(feats), (height, width))
        assert torch.allclose(got, expected, atol=1e-6)
        assert not torch.allclose(got, lr_only, atol=1e-3)


def test_windows_decoded_together_in_training_and_one_by_one_in_eval_agree():
    """Without BatchNorm in the head the batched (training) and the per-window (eval) fusion give the same map."""
    torch.manual_seed(0)
    net = HRDecoder(PoolBackbone(), num_classes=2, backbone_channels=3, hr_scale=32, num_crops=0)
    net.head = nn.Conv2d(3, 2, kernel_size=3, padding=1)
    x = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        batched = net.train()(x)
        windowed = net.eval()(x)
    assert torch.allclose(batched, windowed, atol=1e-6)


def test_fused_map_aligned_with_image():
    net = HRDecoder(PoolBackbone(), num_classes=2, backbone_channels=2, hr_scale=32, num_crops=0).train()
    net.head = nn.Identity()
    fused = net(coordinates(64, 64))[0]
    target = coordinates(64, 64)[0]
    for y0 in (0, 32):
        for x0 in (0, 32):
            inner = (slice(None), slice(y0 + 8, y0 + 24), slice(x0 + 8, x0 + 24))
            assert (fused[inner] - target[inner]).abs().max() < 1e-3


def test_window_boxes():
    assert window_boxes(64, 64, 32) == [(0, 0, 32, 32), (0, 32, 32, 64), (32, 0, 64, 32), (32, 32, 64, 64)]
    assert window_boxes(48, 32, 32) == [(0, 0, 32, 32), (16, 0, 48, 32)]
    assert window_boxes(24, 40, 32) == [(0, 0, 24, 32), (0, 8, 24, 40)]


def test_gradient_flows_through_all_paths():
    net = tiny().train()
    label = (torch.rand(2, 4, 64, 64) > 0.8).float()
    HRDecoderLoss(hr_weight=0.1)(net.forward_with_aux(torch.randn(2, 3, 64, 64)), label).backward()
    for param in (
        net.backbone.conv1.weight,
        net.backbone.stage4[0].branches[3][0].conv1.weight,
        net.head.classifier.weight,
    ):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_lr_only_mode():
    net = tiny(lr_only=True)
    x = torch.randn(2, 3, 64, 64)
    out = net.train().forward_with_aux(x)
    assert set(out) == {"fused", "lr"}
    net.eval()
    with torch.no_grad():
        expected = resize(net.head(net.backbone(resize(x, (32, 32)))), (64, 64))
        assert torch.allclose(net(x), expected, atol=1e-6)
        full = tiny(lr_only=True, downscale=1).eval()
        assert full(x).shape == (2, 4, 64, 64)


def test_trace_matches_eager():
    net = tiny().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, x)
        other = torch.randn(1, 3, 64, 64)
        assert torch.allclose(traced(x), net(x), atol=1e-6)
        assert torch.allclose(traced(other), net(other), atol=1e-6)


def test_autocast():
    net = tiny()
    # Batch 2: the lowest branch is 1x1 here and training-mode BatchNorm needs more than one value.
    x = torch.randn(2, 3, 64, 64)
    label = (torch.rand(2, 4, 64, 64) > 0.8).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = HRDecoderLoss()(net.train().forward_with_aux(x), label)
        with torch.no_grad():
            prob = net.eval()(x)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(prob).all() and prob.shape == (2, 4, 64, 64)


def test_sliding_window_agreement():
    net = tiny().eval()
    inferer = SlidingWindowInferer(roi_size=(64, 64), sw_batch_size=2, overlap=0.5, mode="constant")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(inferer(x, net), net(x), atol=1e-6)
        # Larger images are tiled: each window is down-scaled and fused on its own, so results differ.
        wide = torch.randn(1, 3, 64, 128)
        tiled = inferer(wide, net)
        assert tiled.shape == (1, 4, 64, 128)
        assert not torch.allclose(tiled, net(wide), atol=1e-4)


def test_invalid_configuration():
    with pytest.raises(ValueError, match="divisor"):
        tiny(divisor=12)
    with pytest.raises(ValueError, match="divisor"):
        tiny(downscale=4)
    with pytest.raises(ValueError, match="hr_scale"):
        build_hrdecoder(hr_scale=36, **TINY)
    with pytest.raises(ValueError, match="crop_jitter"):
        tiny(crop_jitter=(1.2, 0.8))
    with pytest.raises(ValueError, match="backbone_channels"):
        HRDecoder(PoolBackbone())
    with pytest.raises(ValueError, match="input size"):
        tiny()(torch.randn(1, 3, 60, 64))
