"""Test-time flip augmentation: a MONAI inferer that averages the logits of a photograph and its mirror images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["FlipAveragedInferer"]


class FlipAveragedInferer(Inferer):
    """Run ``inferer`` on the input and on each of its flips, flip each result back and average the logits.

    ``spatial_axes`` lists the flips, each one spatial axis (0 is the first spatial axis: the photograph's width with
    MONAI's PIL reader, so ``[0]`` is the horizontal mirror; ``[0, 1]`` adds the vertical one). An empty list runs
    ``inferer`` alone, unchanged, which is the default of both bundles: neither the DSM authors (``test.py``) nor the
    HRDecoder authors (``MultiScaleFlipAug(flip=False)``) flip at test time. Logits are averaged, not
    probabilities, so a dual network's branches are fused afterwards as without flips; the cost is one more pass
    of ``inferer`` per flip.

    Args:
        inferer: the MONAI inferer to wrap (``SimpleInferer``, ``SlidingWindowInferer``...).
        spatial_axes: spatial axes to flip, one extra pass each.
    """

    def __init__(self, inferer: Inferer, spatial_axes: Sequence[int] = ()) -> None:
        super().__init__()
        axes = [int(a) for a in spatial_axes]
        if len(set(axes)) != len(axes) or any(a < 0 or a > 2 for a in axes):
            raise ValueError(f"tta_flip_axes must be distinct spatial axes (0, 1 or 2), got {list(spatial_axes)}")
        self.inferer = inferer
        self.spatial_axes = axes

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Logits of ``network`` on ``inputs`` [B, C, *spatial], averaged over the identity and the flips."""
        missing = [a for a in self.spatial_axes if a + 2 >= inputs.ndim]
        if missing:
            raise ValueError(f"tta_flip_axes: spatial axes {missing} do not exist in input {tuple(inputs.shape)}")
        total = self.inferer(inputs, network, *args, **kwargs)
        for axis in self.spatial_axes:
            dims = (axis + 2,)
            total = total + torch.flip(self.inferer(torch.flip(inputs, dims), network, *args, **kwargs), dims)
        return total / (1 + len(self.spatial_axes))
