"""Fundus data: dataset indexers, readers, dictionary transforms, data checks and the synthetic default dataset."""

from monai_exudate.data import checks, default_dataset, indexers, layouts, readers, synthetic, transforms

__all__ = ["checks", "default_dataset", "indexers", "layouts", "readers", "synthetic", "transforms"]
