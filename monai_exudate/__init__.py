"""Lesion segmentation in colour fundus photographs: dual-branch DSM and HRDecoder, on MONAI."""

from monai_exudate import bundle, data, engines, inference, losses, metrics, networks, recipes, utils

__version__ = "0.1.0"

__all__ = ["bundle", "data", "engines", "inference", "losses", "metrics", "networks", "recipes", "utils"]
