"""Tests of the HRDecoder loss: Dice formula, HR crop term and its weight, empty and absent masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_exudate.losses.hrdecoder_loss import HRDecoderLoss, crop_hr_targets


def dice_per_image_class(logits: torch.Tensor, label: torch.Tensor, smooth: float) -> torch.Tensor:
    p = torch.sigmoid(logits)
    num = 2 * (p * label).sum(dim=(2, 3)) + smooth
    den = p.square().sum(dim=(2, 3)) + label.square().sum(dim=(2, 3)) + smooth
    return 1 - num / den


def make_outputs(batch: int = 2, size: int = 32) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    outputs = {
        "fused": torch.randn(batch, 4, size, size, requires_grad=True),
        "hr": torch.randn(2 * batch, 4, 4, 4, requires_grad=True),
        "hr_boxes": torch.tensor([[0, 8, 16, 24], [16, 16, 32, 32]]),
    }
    label = (torch.rand(batch, 4, size, size) > 0.7).float()
    return outputs, label


def test_matches_formula_with_weight():
    outputs, label = make_outputs()
    fused_term = dice_per_image_class(outputs["fused"], label, 1.0).mean()
    crops = torch.cat([label[:, :, 0:16, 8:24], label[:, :, 16:32, 16:32]])
    hr = F.interpolate(outputs["hr"], size=(16, 16), mode="bilinear", align_corners=False)
    hr_term = dice_per_image_class(hr, crops, 1.0).mean()
    for weight in (0.0, 0.1, 0.5):
        loss = HRDecoderLoss(hr_weight=weight)(outputs, label)
        assert torch.allclose(loss, fused_term + weight * hr_term, atol=1e-6)


def test_smooth_and_perfect_prediction():
    outputs, label = make_outputs()
    expected = dice_per_image_class(outputs["fused"], label, 1e-5).mean()
    assert torch.allclose(HRDecoderLoss(hr_weight=0.0, smooth=1e-5)(outputs, label), expected, atol=1e-6)
    perfect = {"fused": (label * 2 - 1) * 30}
    assert HRDecoderLoss()(perfect, label) < 1e-4


def test_lr_only_outputs_use_fused_term():
    outputs, label = make_outputs()
    loss = HRDecoderLoss(hr_weight=0.1)({"fused": outputs["fused"], "lr": outputs["fused"]}, label)
    assert torch.allclose(loss, dice_per_image_class(outputs["fused"], label, 1.0).mean(), atol=1e-6)


def test_empty_labels_finite():
    outputs, _ = make_outputs()
    loss = HRDecoderLoss()(outputs, torch.zeros(2, 4, 32, 32))
    loss.backward()
    assert torch.isfinite(loss) and 0 <= loss.item() <= 1.1
    assert torch.isfinite(outputs["fused"].grad).all() and torch.isfinite(outputs["hr"].grad).all()


def test_absent_masks_ignored():
    outputs, label = make_outputs()
    present = torch.ones(2, 4, dtype=torch.bool)
    present[1, 2] = False
    loss_fn = HRDecoderLoss(hr_weight=0.1)
    loss = loss_fn(outputs, label, present)
    changed = {k: v.detach().clone() for k, v in outputs.items()}
    changed["fused"][1, 2] += 5.0
    changed["hr"][2 + 1, 2] -= 5.0  # box 1 of image 1
    assert torch.allclose(loss_fn(changed, label, present), loss, atol=1e-6)
    fused = dice_per_image_class(outputs["fused"], label, 1.0)[present].mean()
    crops = torch.cat([label[:, :, 0:16, 8:24], label[:, :, 16:32, 16:32]])
    hr = F.interpolate(outputs["hr"], size=(16, 16), mode="bilinear", align_corners=False)
    hr_term = dice_per_image_class(hr, crops, 1.0)[present.repeat(2, 1)].mean()
    assert torch.allclose(loss, fused + 0.1 * hr_term, atol=1e-6)
    nothing = loss_fn(outputs, label, torch.zeros(2, 4))
    nothing.backward()
    assert nothing.item() == 0.0


def test_crop_targets_and_errors():
    outputs, label = make_outputs()
    logits, crops = crop_hr_targets(outputs["hr"], label, outputs["hr_boxes"])
    assert logits.shape == crops.shape == (4, 4, 16, 16)
    assert torch.equal(crops[1], label[1, :, 0:16, 8:24]) and torch.equal(crops[2], label[0, :, 16:32, 16:32])
    loss_fn = HRDecoderLoss()
    with pytest.raises(ValueError, match="label shape"):
        loss_fn(outputs, label[:, :, :16])
    with pytest.raises(ValueError, match="inside"):
        loss_fn({**outputs, "hr_boxes": torch.tensor([[0, 0, 16, 16], [24, 24, 40, 40]])}, label)
    with pytest.raises(ValueError, match="one size"):
        loss_fn({**outputs, "hr_boxes": torch.tensor([[0, 0, 16, 16], [0, 0, 8, 8]])}, label)
    with pytest.raises(ValueError, match="present"):
        loss_fn(outputs, label, torch.ones(4))


def test_forward_output_alone_is_refused():
    """The loss needs ``forward_with_aux``'s dict; the logits tensor ``forward`` returns lacks the HR crops."""
    with pytest.raises(ValueError, match="forward_with_aux"):
        HRDecoderLoss()(torch.zeros(2, 4, 32, 32), torch.zeros(2, 4, 32, 32))
