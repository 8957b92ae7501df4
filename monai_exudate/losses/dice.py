"""Dice loss over a weighted pixel multiset (uniform or re-balanced sampling).

Plain Dice baselines use MONAI's ``monai.losses.DiceLoss(sigmoid=True)``; ``batch=True, smooth_nr=1, smooth_dr=1``
makes it the batch-wise Dice with smoothing 1 that :class:`SampledDiceLoss` computes with the uniform sampler.
"""

from __future__ import annotations

import torch
from torch import nn

from monai_exudate.losses.samplers import RebalancedPixelSampler, UniformPixelSampler

__all__ = ["weighted_dice", "weighted_dice_loss", "SampledDiceLoss", "build_sampler"]

_MODES = ("sampled", "expected")
_SAMPLERS = ("uniform", "rebalanced")


def _check_pair(pred: torch.Tensor, target: torch.Tensor, name: str = "pred") -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"{name} and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}."
        )
    if pred.ndim < 3:
        raise ValueError(f"{name} must have shape [B, C, *spatial], got {tuple(pred.shape)}.")


def weighted_dice(
    probs: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, smooth: float = 1.0
) -> torch.Tensor:
    """Per-channel Dice over a weighted multiset, reduced over the batch and all spatial dimensions.

    ``D_c = (2 * sum(w * p * y) + smooth) / (sum(w * p) + sum(w * y) + smooth)``; returns a tensor of shape ``[C]``.
    """
    _check_pair(probs, target, "probs")
    if weights is not None and weights.shape != probs.shape:
        raise ValueError(f"weights must have the shape of probs {tuple(probs.shape)}, got {tuple(weights.shape)}.")
    dims = [0, *range(2, probs.ndim)]
    target = target.to(probs.dtype)
    if weights is None:
        inter = (probs * target).sum(dims)
        denom = probs.sum(dims) + target.sum(dims)
    else:
        # w * y is a constant: only two products lie on the gradient path
        weights = weights.to(probs.dtype)
        wy = weights * target
        inter = (probs * wy).sum(dims)
        denom = (probs * weights).sum(dims) + wy.sum(dims)
    return (2.0 * inter + smooth) / (denom + smooth)


def weighted_dice_loss(
    probs: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, smooth: float = 1.0
) -> torch.Tensor:
    """``1 - Dice`` per channel (see :func:`weighted_dice`), averaged over channels; a scalar."""
    return (1.0 - weighted_dice(probs, target, weights, smooth)).mean()


def build_sampler(
    sampler: str, sample_rate: float | str = 0.5, generator: torch.Generator | None = None
) -> UniformPixelSampler | RebalancedPixelSampler:
    """Sampler by name: ``"uniform"`` (every pixel once) or ``"rebalanced"`` (see :class:`RebalancedPixelSampler`)."""
    if sampler == "uniform":
        return UniformPixelSampler()
    if sampler == "rebalanced":
        return RebalancedPixelSampler(sample_rate, generator=generator)
    raise ValueError(f"sampler must be one of {_SAMPLERS}, got {sampler!r}.")


class SampledDiceLoss(nn.Module):
    """``1 - Dice`` over the pixel multiset given by a sampler.

    Args:
        sampler: ``"uniform"`` or ``"rebalanced"``.
        sample_rate: positive fraction of the re-balanced draws (float in [0, 1] or ``"inverse_frequency"``).
        mode: ``"sampled"`` draws a multiset at every call; ``"expected"`` uses the expected multiplicities instead
            (deterministic weights). The expected mode is the Dice at the expected counts, a ratio-of-expectations
            approximation of the expected sampled Dice, not its exact expectation.
        smooth: added to numerator and denominator of the Dice (1 in the authors' code).
        sigmoid: apply a sigmoid to the input first (input given as logits).
        generator: optional random generator for the draws.
    """

    def __init__(
        self,
        sampler: str = "rebalanced",
        sample_rate: float | str = 0.5,
        mode: str = "sampled",
        smooth: float = 1.0,
        sigmoid: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        if smooth < 0:
            raise ValueError(f"smooth must be non-negative, got {smooth}.")
        self.sampler = build_sampler(sampler, sample_rate, generator)
        self.mode = mode
        self.smooth = float(smooth)
        self.sigmoid = sigmoid

    def weights(self, target: torch.Tensor) -> torch.Tensor | None:
        """Per-pixel multiplicities for ``target`` (a fresh draw or the expectation, by ``mode``); None when uniform."""
        if isinstance(self.sampler, UniformPixelSampler):
            # every pixel once: the plain Dice, without multiplying by ones
            return None
        with torch.no_grad():
            return self.sampler(target) if self.mode == "sampled" else self.sampler.expected(target)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits (or probabilities when ``sigmoid=False``) ``input`` and binary ``target`` ``[B, C, ...]``."""
        _check_pair(input, target, "input")
        probs = torch.sigmoid(input) if self.sigmoid else input
        return weighted_dice_loss(probs, target, self.weights(target), self.smooth)
