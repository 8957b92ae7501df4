"""Ignite metric that reports every lesion score at once: pixel scores, AUPR, MAE, region F_sigma, size recall."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from monai_exudate.metrics.ignite_metrics import MEAN_NAMES, PIXEL_METRIC_NAMES, LesionMetricBase
from monai_exudate.metrics.pixel import (
    LEVELS,
    absolute_error_sums,
    binarize,
    pixel_histograms,
    scores_from_accumulators,
)
from monai_exudate.metrics.region import DEFAULT_SIGMAS, batch_region_counts, check_sigmas, region_scores
from monai_exudate.metrics.size_recall import (
    DEFAULT_SIZE_BINS,
    batch_size_counts,
    check_size_bins,
    recall_by_size,
    size_bin_labels,
)

__all__ = ["LesionMetricsReport"]


class LesionMetricsReport(LesionMetricBase):
    """Every lesion metric at once: pixel scores, AUPR, MAE, region scores per sigma and size-binned recall.

    ``flat=True`` (default): ``compute()`` returns a flat dict of floats, e.g. ``"EX_iou"``, ``"EX_aupr"``,
    ``"EX_f_sigma0.5"``, ``"EX_recall_size25-100"`` (bins without a lesion are left out) and means over lesions
    ``"mIoU"``, ``"mSN"``, ``"mPPV"``, ``"mF"``, ``"mAUPR"``, ``"mMAE"``, ``"mF_sigma0.5"``. Ignite spreads these keys
    into ``engine.state.metrics`` (``metrics_result_mode="flatten"``), so MONAI's StatsHandler and MLFlowHandler log
    them; the report's own name is not a key there, so use :class:`PixelMetric` as the evaluator's key metric.

    ``flat=False``: ``compute()`` returns a nested JSON-safe dict ``{"lesions": {name: {...}}, "mean": {...}}``
    (``None`` for the recall of an empty size bin) stored under the metric's name, meant for writing a report file.
    MONAI's logging handlers flatten nested dicts by leaf key only, so do not log it with them.

    Args:
        lesion_names: one name per channel, e.g. ``("EX", "HE", "SE", "MA")``.
        sigmas: region overlap levels.
        size_bins: component-area bin edges in pixels.
        hit_fraction: minimum predicted fraction of a lesion component's pixels for it to count as detected.
        threshold: decision threshold on ``q / 255``.
        flat: return the flat dict (see above) or the nested one.
        output_transform, device, missing_masks, present_key: as in :class:`PixelMetric`.
    """

    def __init__(
        self,
        lesion_names: Sequence[str],
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        size_bins: Sequence[float] = DEFAULT_SIZE_BINS,
        hit_fraction: float = 0.5,
        threshold: float = 0.5,
        flat: bool = True,
        output_transform: Callable | None = None,
        device: str | torch.device = "cpu",
        missing_masks: str = "negative",
        present_key: str | None = None,
    ) -> None:
        names = [lesion_names] if isinstance(lesion_names, str) else list(lesion_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"lesion_names must be non-empty and unique, got {lesion_names!r}.")
        if not 0.0 < hit_fraction <= 1.0:
            raise ValueError(f"hit_fraction must lie in (0, 1], got {hit_fraction}.")
        self.lesion_names = names
        self.sigmas = check_sigmas(sigmas)
        self.size_bins = check_size_bins(size_bins)
        self.hit_fraction = float(hit_fraction)
        self.flat = bool(flat)
        mode = "flatten" if self.flat else "named"
        super().__init__(output_transform, device, missing_masks, present_key, threshold, metrics_result_mode=mode)

    @reinit__is_reduced
    def reset(self) -> None:
        c, s, k = len(self.lesion_names), len(self.sigmas), len(self.size_bins) - 1
        self._hist = torch.zeros((c, 2, LEVELS), dtype=torch.int64, device=self._device)
        self._abs_sum = torch.zeros(c, dtype=torch.float64, device=self._device)
        self._pixels = torch.zeros(c, dtype=torch.int64, device=self._device)
        self._region = torch.zeros((c, s, 3), dtype=torch.int64, device=self._device)
        self._size = torch.zeros((c, k, 2), dtype=torch.int64, device=self._device)

    def _accumulate(self, probs: torch.Tensor, target: torch.Tensor, include: torch.Tensor) -> None:
        self._check_channels(len(self.lesion_names), probs.shape[1])
        self._hist += pixel_histograms(probs, target, include).to(self._device)
        abs_sum, pixels = absolute_error_sums(probs, target, include)
        self._abs_sum += abs_sum.to(self._device)
        self._pixels += pixels.to(self._device)
        pred, truth = binarize(probs, self.threshold), target > 0.5
        self._region += batch_region_counts(pred, truth, self.sigmas, include).to(self._device)
        self._size += batch_size_counts(pred, truth, self.size_bins, self.hit_fraction, include).to(self._device)

    def _nested(self) -> dict:
        pixel = scores_from_accumulators(self._hist, self._abs_sum, self._pixels, self.threshold)
        region = self._region.cpu().numpy()
        size = self._size.cpu().numpy()
        lesions = {}
        for c, name in enumerate(self.lesion_names):
            entry = dict(pixel[c])
            entry["region"] = {f"{s:g}": v for s, v in region_scores(region[c], self.sigmas).items()}
            entry["size_recall"] = recall_by_size(size[c], self.size_bins)
            lesions[name] = entry
        mean = {m: float(np.mean([lesions[n][k] for n in self.lesion_names])) for k, m in MEAN_NAMES.items()}
        for s in self.sigmas:
            mean[f"mF_sigma{s:g}"] = float(np.mean([lesions[n]["region"][f"{s:g}"]["f"] for n in self.lesion_names]))
        return {"lesions": lesions, "mean": mean}

    def _flatten(self, nested: dict) -> dict[str, float]:
        flat: dict[str, float] = {}
        for name, entry in nested["lesions"].items():
            for k in PIXEL_METRIC_NAMES:
                flat[f"{name}_{k}"] = float(entry[k])
            for s, scores in entry["region"].items():
                flat[f"{name}_f_sigma{s}"] = float(scores["f"])
            for label in size_bin_labels(self.size_bins):
                recall = entry["size_recall"][label]["recall"]
                if recall is not None:
                    flat[f"{name}_recall_size{label}"] = float(recall)
        flat.update(nested["mean"])
        return flat

    @sync_all_reduce("_hist", "_abs_sum", "_pixels", "_region", "_size")
    def compute(self) -> dict:
        if int(self._pixels.sum()) == 0:
            raise NotComputableError("LesionMetricsReport needs at least one update before compute().")
        nested = self._nested()
        return self._flatten(nested) if self.flat else nested
