"""Base of the streaming per-channel count accumulators (region counts, size-binned recall)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from monai_exudate.metrics.pixel import MISSING_MASK_RULES, binarize, check_probabilities, resolve_missing_masks


class ChannelCountAccumulator(ABC):
    """Sum per-channel count tensors over a data set; subclasses say how one batch of binary maps is counted.

    Args:
        threshold: decision threshold on the 8-bit levels (``q / 255 > threshold``).
        missing_masks: ``"negative"`` or ``"ignore"`` (see :func:`~monai_exudate.metrics.pixel.resolve_missing_masks`).
    """

    def __init__(self, threshold: float = 0.5, missing_masks: str = "negative") -> None:
        if missing_masks not in MISSING_MASK_RULES:
            raise ValueError(f"missing_masks must be one of {MISSING_MASK_RULES}, got {missing_masks!r}.")
        self.threshold = float(threshold)
        self.missing_masks = missing_masks
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated counts."""
        self.counts: torch.Tensor | None = None

    @abstractmethod
    def batch_counts(self, pred: torch.Tensor, truth: torch.Tensor, include: torch.Tensor | None) -> torch.Tensor:
        """Counts ``[C, ...]`` of one batch of binary predictions and truths ``[B, C, *spatial]``."""

    def update(self, probs: torch.Tensor, target: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Add a batch of probabilities and binary targets ``[B, C, *spatial]``."""
        check_probabilities(probs, target)
        target, include = resolve_missing_masks(target, present, self.missing_masks)
        counts = self.batch_counts(binarize(probs, self.threshold), target > 0.5, include)
        if self.counts is None:
            self.counts = counts
        elif counts.shape != self.counts.shape:
            raise ValueError(f"probs has {counts.shape[0]} channels, earlier batches had {self.counts.shape[0]}.")
        else:
            self.counts += counts

    def _accumulated(self) -> torch.Tensor:
        if self.counts is None:
            raise ValueError(f"{type(self).__name__}.compute() needs at least one update().")
        return self.counts
