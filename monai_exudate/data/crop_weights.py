"""Crop-centre weights that give every lesion component the same chance of being sampled, whatever its size."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage

__all__ = ["SMALL_PATCH_SAMPLINGS", "ComponentBalancedWeightd", "component_balanced_weights"]

# how the DSM small-exudate branch's loader chooses its crop centres
SMALL_PATCH_SAMPLINGS = ("pixels", "components")

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def component_balanced_weights(label: np.ndarray, pos: float = 1.0, neg: float = 1.0) -> np.ndarray:
    """``[H, W]`` float32 weights of the pixels of a ``[C, H, W]`` (or ``[H, W]``) label map as crop centres.

    The lesion pixels (any channel above 0.5) share ``pos / (pos + neg)`` of the total weight, the background pixels
    the rest, evenly. Within the lesions each 8-connected component gets an equal share spread over its pixels, so a
    10-pixel exudate is as likely a crop centre as a 10,000-pixel plaque. Pixel-balanced sampling
    (``RandCropByPosNegLabeld``) instead picks components in proportion to their area: on the four training
    photographs of the IDRiD sample at 1440x960 (650 exudate components), the components of at most 11 pixels
    (under about 100 pixels at the original 4288x2848) are 17% of the components but 1.4% of the exudate pixels, so
    the small exudates the DSM method's small branch exists for centre 1.4% of the lesion-centred crops instead of
    17%.
    A map with no lesion, or no background, is weighted uniformly over what it has.
    """
    if pos < 0 or neg < 0 or pos + neg <= 0:
        raise ValueError(f"pos and neg must be non-negative with a positive sum, got pos={pos}, neg={neg}.")
    label = np.asarray(label)
    lesion = (label > 0.5).any(axis=0) if label.ndim == 3 else label > 0.5
    components, count = ndimage.label(lesion, structure=_EIGHT_CONNECTED)
    weights = np.zeros(lesion.shape, dtype=np.float64)
    background = ~lesion
    n_background = int(background.sum())
    if count == 0 or n_background == 0:
        weights[:] = 1.0 / lesion.size
        return weights.astype(np.float32)
    areas = np.bincount(components.ravel())
    total = pos + neg
    weights[lesion] = (pos / total) / count / areas[components[lesion]]
    weights[background] = (neg / total) / n_background
    return weights.astype(np.float32)


class ComponentBalancedWeightd(MapTransform):
    """Write :func:`component_balanced_weights` of ``keys``' label map to ``weight_key`` (``[1, H, W]``), for MONAI's
    ``RandWeightedCropd(w_key=weight_key)``.

    Used by the DSM small-exudate branch's loader (``small_patch_sampling: components``), so that branch sees the small
    exudates it is meant to learn (Liu, Liu, Liang 2022: the small branch's re-balanced sampler) in its crops too.

    Args:
        keys: the label key (one).
        weight_key: key of the weight map written.
        pos: share of the weight on lesion pixels, relative to ``neg``.
        neg: share of the weight on background pixels.
        allow_missing_keys: skip a missing label instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        weight_key: str = "crop_weight",
        pos: float = 1.0,
        neg: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"ComponentBalancedWeightd takes one label key, got {self.keys}.")
        self.weight_key = weight_key
        self.pos, self.neg = float(pos), float(neg)
        component_balanced_weights(np.zeros((1, 1)), self.pos, self.neg)  # checks the shares once, at build time

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            array = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
            d[self.weight_key] = torch.from_numpy(component_balanced_weights(array, self.pos, self.neg)[None])
        return d
