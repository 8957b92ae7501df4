"""HRDecoder loss: per-class sigmoid Dice on the fused logits plus a weighted Dice on the HR crops."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

__all__ = ["HRDecoderLoss", "crop_hr_targets"]


def crop_hr_targets(
    hr_logits: torch.Tensor, label: torch.Tensor, boxes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair HR crop logits with full-resolution label crops.

    ``hr_logits`` is ``[M * B, C, h, w]`` box-major, ``label`` ``[B, C, H, W]`` and ``boxes`` ``[M, 4]`` square
    boxes ``(y0, x0, y1, x1)`` of one side. The logits are bilinearly resized to the box side and the label is
    cropped at full resolution; both are returned box-major ``[M * B, C, side, side]``.
    """
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"hr_boxes must be [M, 4], got {tuple(boxes.shape)}.")
    box_list = boxes.tolist()
    batch = label.shape[0]
    if hr_logits.shape[0] != len(box_list) * batch:
        raise ValueError(f"hr logits have {hr_logits.shape[0]} crops, expected {len(box_list)} boxes x {batch} images.")
    sides = {(y1 - y0, x1 - x0) for y0, x0, y1, x1 in box_list}
    if len(sides) != 1:
        raise ValueError(f"hr_boxes must share one size, got {sorted(sides)}.")
    size = sides.pop()
    height, width = label.shape[-2:]
    if min(size) < 1 or any(y0 < 0 or x0 < 0 or y1 > height or x1 > width for y0, x0, y1, x1 in box_list):
        raise ValueError(f"hr_boxes {box_list} must be non-empty and lie inside the label of size {(height, width)}.")
    crops = torch.cat([label[:, :, y0:y1, x0:x1] for y0, x0, y1, x1 in box_list], dim=0)
    logits = F.interpolate(hr_logits, size=size, mode="bilinear", align_corners=False)
    return logits, crops


class HRDecoderLoss(nn.Module):
    """``L = Dice(fused, label) + hr_weight * Dice(hr crops, label crops)``.

    Dice is MONAI's squared sigmoid Dice ``1 - (2 sum(p y) + s) / (sum(p^2) + sum(y^2) + s)`` computed per image
    and class, then averaged. ``forward`` takes the ``forward_with_aux`` dict of
    :class:`~monai_exudate.networks.hrdecoder.HRDecoder` and a multi-label target ``[B, C, H, W]``; outputs
    without ``hr`` (the LR-only network) give the fused term alone. ``present`` ``[B, C]`` (optional) marks which
    masks exist: absent (image, class) pairs are left out of the average, in both terms. An empty mask of a present
    class still counts (its Dice is smoothed by ``s``), so all-background labels give a finite loss.

    Args:
        hr_weight: lambda, the weight of the HR crop term (0.1 in the paper).
        smooth: ``s``, added to numerator and denominator.
    """

    def __init__(self, hr_weight: float = 0.1, smooth: float = 1.0) -> None:
        super().__init__()
        if hr_weight < 0 or smooth < 0:
            raise ValueError(f"hr_weight and smooth must be non-negative, got {hr_weight} and {smooth}.")
        self.hr_weight = hr_weight
        self.dice = DiceLoss(sigmoid=True, squared_pred=True, smooth_nr=smooth, smooth_dr=smooth, reduction="none")

    def _dice(self, logits: torch.Tensor, label: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        per = self.dice(logits.float(), label.float()).reshape(logits.shape[0], logits.shape[1])
        if present is None:
            return per.mean()
        weight = present.to(per.dtype)
        return (per * weight).sum() / weight.sum().clamp_min(1.0)

    def forward(
        self, outputs: Mapping[str, torch.Tensor], label: torch.Tensor, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not isinstance(outputs, Mapping) or "fused" not in outputs:
            raise ValueError(
                f"outputs must be HRDecoder's forward_with_aux dict with a 'fused' entry, got {type(outputs).__name__} "
                "(a trainer passes it with monai_exudate.engines.ForwardWithAuxInferer; forward gives the logits alone)"
            )
        fused = outputs["fused"]
        if fused.shape != label.shape:
            raise ValueError(f"label shape {tuple(label.shape)} differs from the fused logits {tuple(fused.shape)}.")
        if present is not None and tuple(present.shape) != tuple(label.shape[:2]):
            raise ValueError(f"present must be [B, C] = {tuple(label.shape[:2])}, got {tuple(present.shape)}.")
        loss = self._dice(fused, label, present)
        if self.hr_weight > 0 and "hr" in outputs:
            boxes = outputs["hr_boxes"]
            logits, crops = crop_hr_targets(outputs["hr"], label, boxes)
            hr_present = None if present is None else present.repeat(boxes.shape[0], 1)
            loss = loss + self.hr_weight * self._dice(logits, crops, hr_present)
        return loss
