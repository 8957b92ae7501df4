"""The HRDecoder trainer's per-step pieces: batch preparation with mask presence, the loss call, the LR factor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from monai.utils import convert_to_tensor

from monai_exudate.metrics.pixel import MISSING_MASK_RULES

__all__ = ["MaskPresencePrepareBatch", "MissingMaskLoss", "WarmupPolyFactor", "step_loss", "warmup_poly_scheduler"]


class MaskPresencePrepareBatch:
    """``prepare_batch`` for MONAI's ``SupervisedTrainer``: the image, and as target the label with its
    ``label_present`` flags (which lesions have a mask file), so the loss can skip missing masks."""

    def __call__(
        self, batchdata: Mapping[str, Any], device: Any = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        def to(value: Any) -> torch.Tensor:
            return convert_to_tensor(value, device=device)

        return to(batchdata["image"]), (to(batchdata["label"]), to(batchdata["label_present"]))


class MissingMaskLoss(torch.nn.Module):
    """Call an HRDecoder loss as ``loss(pred, (label, present))``: with ``missing_masks="ignore"`` the presence flags
    go to the loss (a lesion without a mask file is left out of its image's terms); with ``"negative"`` it is all
    background, as the authors treat IDRiD's missing SE masks."""

    def __init__(self, loss: Callable[..., torch.Tensor], missing_masks: str = "negative") -> None:
        super().__init__()
        if missing_masks not in MISSING_MASK_RULES:
            raise ValueError(f"missing_masks must be one of {MISSING_MASK_RULES}, got {missing_masks!r}.")
        self.loss = loss
        self.ignore = missing_masks == "ignore"

    def forward(self, pred: Any, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        label, present = target
        return self.loss(pred, label, present if self.ignore else None)


class WarmupPolyFactor:
    """LR factor for ``LambdaLR`` at iteration ``it``: poly decay to ``min_ratio`` over ``total_iters`` (power
    ``power``), times a linear warm-up from ``warmup_ratio`` over the first ``warmup_iters`` (mmseg's schedule, used
    by the HRDecoder authors' configs). A plain object, so the scheduler's checkpoint holds its settings."""

    def __init__(
        self, total_iters: int, warmup_iters: int, warmup_ratio: float, power: float = 1.0, min_ratio: float = 0.0
    ) -> None:
        self.total_iters = int(total_iters)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)
        self.power = float(power)
        self.min_ratio = float(min_ratio)

    def __call__(self, it: int) -> float:
        poly = (1 - self.min_ratio) * max(1 - it / self.total_iters, 0.0) ** self.power + self.min_ratio
        if it < self.warmup_iters:
            return poly * (1 - (1 - it / self.warmup_iters) * (1 - self.warmup_ratio))
        return poly


def step_loss(output: Mapping[str, Any]) -> float:
    """The loss of a trainer step as a number, for the stats and MLflow handlers. The HRDecoder trainer does not
    decollate its output, so MONAI's ``from_engine(["loss"], first=True)`` would hand them a one-item tuple."""
    return float(output["loss"])


def warmup_poly_scheduler(
    optimizer: torch.optim.Optimizer,
    total_iters: int,
    warmup_iters: int,
    warmup_ratio: float,
    power: float = 1.0,
    min_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The HRDecoder trainer's per-iteration LR schedule: ``LambdaLR`` with :class:`WarmupPolyFactor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupPolyFactor(total_iters, warmup_iters, warmup_ratio, power, min_ratio)
    )
