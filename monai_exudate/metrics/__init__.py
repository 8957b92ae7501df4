"""Lesion segmentation metrics as Ignite metrics (pixel histograms and scores, region F_sigma, the full report), and
the pure functions they are computed with."""

from monai_exudate.metrics.ignite_metrics import (
    PIXEL_METRIC_NAMES,
    LesionMetricBase,
    PixelHistograms,
    PixelMetric,
    RegionFMetric,
    default_output_transform,
)
from monai_exudate.metrics.pixel import (
    AUPR_THRESHOLDS,
    aupr_from_histograms,
    binarize,
    counts_at_threshold,
    f_maximising_threshold,
    pixel_histograms,
    pixel_scores,
    precision_recall_points,
    quantize,
    resolve_missing_masks,
    trapezoid_auc,
)
from monai_exudate.metrics.region import DEFAULT_SIGMAS, region_counts, region_scores
from monai_exudate.metrics.report import LesionMetricsReport
from monai_exudate.metrics.size_recall import DEFAULT_SIZE_BINS, lesion_size_counts, recall_by_size

__all__ = [
    "AUPR_THRESHOLDS",
    "DEFAULT_SIGMAS",
    "DEFAULT_SIZE_BINS",
    "PIXEL_METRIC_NAMES",
    "LesionMetricBase",
    "LesionMetricsReport",
    "PixelHistograms",
    "PixelMetric",
    "RegionFMetric",
    "aupr_from_histograms",
    "binarize",
    "counts_at_threshold",
    "default_output_transform",
    "f_maximising_threshold",
    "lesion_size_counts",
    "pixel_histograms",
    "pixel_scores",
    "precision_recall_points",
    "quantize",
    "recall_by_size",
    "region_counts",
    "region_scores",
    "resolve_missing_masks",
    "trapezoid_auc",
]
