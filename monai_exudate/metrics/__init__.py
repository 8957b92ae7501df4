"""Lesion segmentation metrics: streaming pixel scores and AUPR, region F_sigma, size-binned recall, Ignite wrappers."""

from monai_exudate.metrics.ignite_metrics import (
    PIXEL_METRIC_NAMES,
    LesionMetricsReport,
    PixelMetric,
    RegionFMetric,
    default_output_transform,
)
from monai_exudate.metrics.pixel import (
    AUPR_THRESHOLDS,
    PixelCounts,
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
from monai_exudate.metrics.region import DEFAULT_SIGMAS, RegionCounts, region_counts, region_scores
from monai_exudate.metrics.size_recall import DEFAULT_SIZE_BINS, SizeRecall, lesion_size_counts, recall_by_size

__all__ = [
    "AUPR_THRESHOLDS",
    "DEFAULT_SIGMAS",
    "DEFAULT_SIZE_BINS",
    "PIXEL_METRIC_NAMES",
    "LesionMetricsReport",
    "PixelCounts",
    "PixelMetric",
    "RegionCounts",
    "RegionFMetric",
    "SizeRecall",
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
