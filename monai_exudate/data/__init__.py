"""Fundus data: dataset indexers, readers, dictionary transforms, resizing, data checks, the synthetic default set."""

from monai_exudate.data import (
    checks,
    crop_weights,
    indexers,
    layouts,
    preprocessing,
    readers,
    resize,
    selection,
    synthetic,
    transforms,
)

__all__ = [
    "checks",
    "crop_weights",
    "indexers",
    "layouts",
    "preprocessing",
    "readers",
    "resize",
    "selection",
    "synthetic",
    "transforms",
]
