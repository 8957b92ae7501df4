"""Map a prediction back to the photograph's grid by inverting the preprocessing that made its input."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from monai.data import MetaTensor

__all__ = ["invert_prediction", "rows_first"]


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
