"""Map a prediction back to the photograph's grid by inverting the preprocessing that made its input."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = ["invert_prediction", "levels_on_photograph", "rows_first"]


def invert_prediction(
    preprocessing: Callable, prediction: torch.Tensor, image: MetaTensor, key: str = "image"
) -> torch.Tensor:
    """``prediction`` (C, *spatial), on the grid of the preprocessed ``image``, mapped back to the photograph's grid.

    The prediction takes over ``image``'s metadata and its record of applied operations (copies: ``image`` is left as
    it was), then MONAI's ``inverse`` of ``preprocessing`` (a ``Compose``) undoes each invertible step in reverse order,
    resizing with each transform's own inverse. The inference runner and the MLflow model both map through here.
    """
    pred = MetaTensor(
        prediction,
        meta=copy.deepcopy(dict(image.meta)),
        applied_operations=copy.deepcopy(image.applied_operations),
    )
    return torch.as_tensor(preprocessing.inverse({key: pred})[key])


def rows_first(maps: torch.Tensor) -> torch.Tensor:
    """(C, W, H) maps as MONAI's PIL reader orders space (width first) to (C, H, W), as image files and arrays are."""
    return maps.transpose(1, 2)


def levels_on_photograph(
    preprocessing: Callable,
    prob: torch.Tensor,
    image: MetaTensor,
    key: str = "image",
    size: Sequence[int] = (),
    float_maps: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """8-bit levels ``round(p * 255)`` (C, H, W) of ``prob`` mapped back to the photograph's grid
    (:func:`invert_prediction`), and its float maps (C, H, W) when ``float_maps``.

    ``size``: the photograph's (width, height) as MONAI's reader gives it; a mapped prediction of another size raises
    ``ValueError``.
    """
    with torch.no_grad():
        prob = invert_prediction(preprocessing, prob, image, key)
        levels = prob.clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
        levels = rows_first(levels).contiguous().cpu().numpy()
        volume = rows_first(prob.float()).cpu().numpy() if float_maps else None
    if size and tuple(levels.shape[:0:-1]) != tuple(int(s) for s in size):
        raise ValueError(f"inverted prediction has size {levels.shape[:0:-1]} but the image has size {size}")
    return levels, volume
