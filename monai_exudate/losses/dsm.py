"""Dual-sampling modulated (DSM) Dice loss for the dual-branch exudate network."""

from __future__ import annotations

import torch
from torch import nn

from monai_exudate.losses.dice import SampledDiceLoss

__all__ = ["DSMLoss"]


class DSMLoss(nn.Module):
    """``alpha * L_L + (1 - alpha) * L_S`` for the large- and small-exudate branches.

    ``L_L`` is ``1 - Dice`` with every pixel of the large-branch batch counted once; ``L_S`` is ``1 - Dice`` over the
    re-balanced multiset of the small-branch batch (see
    :class:`~monai_exudate.losses.samplers.RebalancedPixelSampler`). Dice terms are computed per channel over the
    whole batch with smoothing ``smooth`` and averaged over channels. A batch without any exudate pixel gives a finite
    loss: the re-balanced draws then all fall on background pixels.

    ``alpha`` is a plain attribute that a training handler updates at the start of each epoch from a schedule
    (:mod:`monai_exudate.losses.schedules`).

    Args:
        sample_rate: positive fraction of the small-branch draws, float in [0, 1] or ``"inverse_frequency"``.
        mode: ``"sampled"`` (a new draw per call) or ``"expected"`` (expected multiplicities; the Dice at the expected
            counts, a ratio-of-expectations approximation of the mean sampled loss).
        small_sampler: ``"rebalanced"`` (DSM) or ``"uniform"`` (ablation: plain Dice on both branches).
        smooth: Dice smoothing term (1 in the authors' code).
        alpha: initial weight of the large-branch term, in [0, 1].
        sigmoid: inputs are logits (apply a sigmoid); set False for probabilities.
        generator: optional random generator for the small-branch draws.
    """

    def __init__(
        self,
        sample_rate: float | str = 0.5,
        mode: str = "sampled",
        small_sampler: str = "rebalanced",
        smooth: float = 1.0,
        alpha: float = 1.0,
        sigmoid: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.large_loss = SampledDiceLoss("uniform", mode="expected", smooth=smooth, sigmoid=sigmoid)
        self.small_loss = SampledDiceLoss(
            small_sampler, sample_rate=sample_rate, mode=mode, smooth=smooth, sigmoid=sigmoid, generator=generator
        )
        self.alpha = alpha

    @property
    def alpha(self) -> float:
        """Weight of the large-branch term."""
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {value}.")
        self._alpha = value

    @property
    def mode(self) -> str:
        """Sampling mode of the small branch (``"sampled"`` or ``"expected"``)."""
        return self.small_loss.mode

    def forward(
        self,
        logits_large: torch.Tensor,
        target_large: torch.Tensor,
        logits_small: torch.Tensor,
        target_small: torch.Tensor,
    ) -> torch.Tensor:
        """Scalar loss from the two branches' logits ``[B, C, H, W]`` and binary targets of the same shapes."""
        loss_large = self.large_loss(logits_large, target_large)
        loss_small = self.small_loss(logits_small, target_small)
        return self._alpha * loss_large + (1.0 - self._alpha) * loss_small

    def extra_repr(self) -> str:
        return f"alpha={self._alpha}, mode={self.mode!r}"
