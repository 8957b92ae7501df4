"""Class-balanced binary cross-entropy with logits (HED-style), a baseline loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ClassBalancedBCELoss", "class_balance_weights"]


def class_balance_weights(target: torch.Tensor) -> torch.Tensor:
    """Per-pixel weights: ``|Y-| / |Y|`` on positives and ``|Y+| / |Y|`` on negatives, per channel over the batch.

    With no positive pixel in a channel the negatives get weight 0 (and there is no positive), so that channel adds
    nothing to the loss; the result is always finite.
    """
    if target.ndim < 3:
        raise ValueError(f"target must have shape [B, C, *spatial], got {tuple(target.shape)}.")
    dims = [0, *range(2, target.ndim)]
    dtype = target.dtype if target.is_floating_point() else torch.get_default_dtype()
    pos = (target > 0.5).to(dtype)
    frac_pos = pos.mean(dims, keepdim=True)
    return pos * (1.0 - frac_pos) + (1.0 - pos) * frac_pos


class ClassBalancedBCELoss(nn.Module):
    """HED-style class-balanced BCE with logits; class weights recomputed for each batch and channel.

    Args:
        reduction: ``"mean"`` (over all pixels and channels) or ``"sum"``.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits ``input`` and binary ``target`` of the same shape ``[B, C, *spatial]``."""
        if input.shape != target.shape:
            raise ValueError(
                f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}."
            )
        target = target.to(input.dtype)
        weights = class_balance_weights(target)
        return F.binary_cross_entropy_with_logits(input, target, weight=weights, reduction=self.reduction)
