"""Ignite metrics for MONAI evaluators: pixel scores, region F_sigma and a full per-lesion report.

Each metric reads ``(pred, label)`` or ``(pred, label, present)`` from its ``output_transform``; ``pred`` holds
probabilities (after the evaluator's postprocessing) and may be a batched tensor ``[B, C, H, W]`` or a list of
per-sample tensors ``[C, H, W]`` (MONAI decollates batches; ``monai.handlers.from_engine(["pred", "label"])`` then
yields lists). With ``present_key`` set and a two-item output, the presence flags are read under that key from
``engine.state.output`` or, failing that, ``engine.state.batch``.

Counts are kept in tensors reduced across ranks with ``sync_all_reduce``. :class:`PixelMetric` and
:class:`RegionFMetric` size their tensors at the first update unless ``num_channels`` is given; in a distributed run
give ``num_channels`` (or make sure every rank sees data) so that all ranks hold tensors of the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.handlers import from_engine

from monai_exudate.metrics.pixel import (
    LEVELS,
    MISSING_MASK_RULES,
    absolute_error_sums,
    binarize,
    check_probabilities,
    pixel_histograms,
    resolve_missing_masks,
    scores_from_accumulators,
)
from monai_exudate.metrics.region import batch_region_counts, check_sigmas, region_scores

__all__ = [
    "LesionMetricBase",
    "PixelHistograms",
    "PixelMetric",
    "RegionFMetric",
    "default_output_transform",
    "PIXEL_METRIC_NAMES",
    "MEAN_NAMES",
]

PIXEL_METRIC_NAMES = ("iou", "sn", "ppv", "f", "aupr", "mae")
MEAN_NAMES = {"iou": "mIoU", "sn": "mSN", "ppv": "mPPV", "f": "mF", "aupr": "mAUPR", "mae": "mMAE"}
_MISSING = object()


def default_output_transform(output):
    """``(pred, label)`` from a MONAI output (dict or decollated list of dicts); tuples pass through unchanged."""
    if isinstance(output, Mapping) or (isinstance(output, list) and output and isinstance(output[0], Mapping)):
        return from_engine(["pred", "label"])(output)
    return output


def _channel_or_mean(values: Sequence[float], channel: int | None) -> float:
    """The value of ``channel``, or the mean over channels when it is None."""
    if channel is None:
        return float(np.mean(values))
    if channel >= len(values):
        raise ValueError(f"channel {channel} is out of range for {len(values)} channels.")
    return float(values[channel])


def _plain(x) -> torch.Tensor:
    """A plain tensor (MetaTensor metadata dropped, numpy converted), detached."""
    if hasattr(x, "as_tensor"):
        x = x.as_tensor()
    return torch.as_tensor(x).detach()


def _present_rows(present, num: int) -> torch.Tensor | None:
    """Presence flags as a bool ``[num, C]`` tensor (``C`` may be 1 when given per sample as a scalar)."""
    if present is None:
        return None
    if isinstance(present, (list, tuple)):
        if len(present) != num:
            raise ValueError(f"present has {len(present)} entries for {num} samples.")
        return torch.stack([_plain(p).bool().reshape(-1) for p in present])
    present = _plain(present).bool()
    return present.reshape(num, -1)


def _chunks(pred, label, present) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Split the metric input into batched ``(probs [b, C, ...], target, present [b, C] or None)`` pieces."""
    if isinstance(pred, torch.Tensor) != isinstance(label, torch.Tensor):
        raise ValueError("pred and label must both be batched tensors or both be lists of per-sample tensors.")
    if isinstance(pred, torch.Tensor):
        pred, label = _plain(pred), _plain(label)
        return [(pred, label, _present_rows(present, pred.shape[0]))]
    if not isinstance(pred, Sequence) or len(pred) != len(label):
        raise ValueError("pred and label must be sequences of the same length.")
    if len(pred) == 0:
        return []
    preds = [_plain(p) for p in pred]
    labels = [_plain(y) for y in label]
    rows = _present_rows(present, len(preds))
    if all(p.shape == preds[0].shape for p in preds) and all(y.shape == labels[0].shape for y in labels):
        return [(torch.stack(preds), torch.stack(labels), rows)]
    # samples of different sizes (e.g. DDR images at their original resolution) are handled one by one
    return [
        (p.unsqueeze(0), y.unsqueeze(0), None if rows is None else rows[i : i + 1])
        for i, (p, y) in enumerate(zip(preds, labels, strict=True))
    ]


def _find_key(data, key: str):
    if isinstance(data, Mapping):
        return data[key] if key in data else _MISSING
    if isinstance(data, list) and data and all(isinstance(d, Mapping) and key in d for d in data):
        return [d[key] for d in data]
    return _MISSING


class LesionMetricBase(Metric):
    """Shared input handling: output parsing, presence flags and the missing-mask rule.

    Subclasses keep their counts in tensors and add one batch to them in ``_accumulate(probs, target, include)``.
    """

    def __init__(
        self,
        output_transform: Callable | None,
        device: str | torch.device,
        missing_masks: str,
        present_key: str | None,
        threshold: float,
        metrics_result_mode: str = "both",
    ) -> None:
        if missing_masks not in MISSING_MASK_RULES:
            raise ValueError(f"missing_masks must be one of {MISSING_MASK_RULES}, got {missing_masks!r}.")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}.")
        self.missing_masks = missing_masks
        self.present_key = present_key
        self.threshold = float(threshold)
        super().__init__(
            output_transform=output_transform or default_output_transform,
            device=device,
            skip_unrolling=True,
            metrics_result_mode=metrics_result_mode,
        )

    @torch.no_grad()
    def iteration_completed(self, engine) -> None:
        output = self._output_transform(engine.state.output)
        if not isinstance(output, (tuple, list)) or len(output) not in (2, 3):
            raise ValueError(
                f"{type(self).__name__}: output_transform must return (pred, label) or (pred, label, present)."
            )
        if len(output) == 2 and self.present_key is not None:
            present = _find_key(engine.state.output, self.present_key)
            if present is _MISSING:
                present = _find_key(engine.state.batch, self.present_key)
            if present is _MISSING:
                raise ValueError(f"present_key {self.present_key!r} is in neither the engine output nor the batch.")
            output = (*output, present)
        self.update(output)

    @reinit__is_reduced
    def update(self, output: Sequence) -> None:
        if len(output) not in (2, 3):
            raise ValueError(f"{type(self).__name__}.update expects (pred, label) or (pred, label, present).")
        present = output[2] if len(output) == 3 else None
        for probs, target, rows in _chunks(output[0], output[1], present):
            check_probabilities(probs, target)
            target, include = resolve_missing_masks(target, rows, self.missing_masks)
            self._accumulate(probs, target, include)

    def _check_channels(self, have: int | None, got: int) -> None:
        if have is not None and have != got:
            raise ValueError(f"{type(self).__name__}: pred has {got} channels, expected {have}.")

    def _set_channels(self, channel: int | None, num_channels: int | None) -> None:
        """Check and keep the reported channel (None: the mean) and the channel count allocated up front."""
        if channel is not None and (channel < 0 or (num_channels is not None and channel >= num_channels)):
            raise ValueError(f"channel must be a valid channel index, got {channel}.")
        if num_channels is not None and num_channels < 1:
            raise ValueError(f"num_channels must be positive, got {num_channels}.")
        self.channel = channel
        self.num_channels = num_channels


class PixelHistograms(LesionMetricBase):
    """The set-wide 8-bit probability histograms of lesion and background pixels, ``[C, 2, 256]`` (int64).

    Index ``[c, 1]`` counts lesion pixels and ``[c, 0]`` background pixels at each level ``q = round(255 p)``; every
    pixel score, AUPR, the PR curve and the F-maximising operating threshold follow from them. The absolute error
    sum and the pixel count (for MAE) are accumulated alongside.

    Args:
        output_transform: maps the engine output to ``(pred, label[, present])``; default reads ``"pred"``/``"label"``.
        device: device of the accumulated counts (use the rank's CUDA device with NCCL).
        missing_masks: ``"negative"`` (image without a mask counts as lesion-free) or ``"ignore"`` (left out).
        present_key: key of the per-image presence flags ``[C]`` in the engine output or batch.
        num_channels: allocate the counts up front (needed for distributed runs, see the module docstring).
    """

    def __init__(
        self,
        output_transform: Callable | None = None,
        device: str | torch.device = "cpu",
        missing_masks: str = "negative",
        present_key: str | None = None,
        num_channels: int | None = None,
        threshold: float = 0.5,
    ) -> None:
        self._set_channels(None, num_channels)
        super().__init__(output_transform, device, missing_masks, present_key, threshold)

    @reinit__is_reduced
    def reset(self) -> None:
        c = self.num_channels
        self._hist = None if c is None else torch.zeros((c, 2, LEVELS), dtype=torch.int64, device=self._device)
        self._abs_sum = None if c is None else torch.zeros(c, dtype=torch.float64, device=self._device)
        self._pixels = None if c is None else torch.zeros(c, dtype=torch.int64, device=self._device)

    def _accumulate(self, probs: torch.Tensor, target: torch.Tensor, include: torch.Tensor) -> None:
        self._check_channels(None if self._hist is None else self._hist.shape[0], probs.shape[1])
        hist = pixel_histograms(probs, target, include).to(self._device)
        abs_sum, pixels = absolute_error_sums(probs, target, include)
        if self._hist is None:
            self._hist = hist
            self._abs_sum = abs_sum.to(self._device)
            self._pixels = pixels.to(self._device)
        else:
            self._hist += hist
            self._abs_sum += abs_sum.to(self._device)
            self._pixels += pixels.to(self._device)

    def _check_computable(self) -> None:
        if self._hist is None or int(self._pixels.sum()) == 0:
            raise NotComputableError(f"{type(self).__name__} needs at least one update before compute().")

    @sync_all_reduce("_hist", "_abs_sum", "_pixels")
    def compute(self) -> torch.Tensor:
        self._check_computable()
        return self._hist.cpu()


class PixelMetric(PixelHistograms):
    """One pixel-level score over the data set, as a scalar float: IoU, SN, PPV, F, AUPR or MAE.

    Args:
        name: ``"iou"``, ``"sn"``, ``"ppv"``, ``"f"``, ``"aupr"`` or ``"mae"``.
        channel: channel index, or None for the mean over channels.
        threshold: decision threshold on ``q / 255`` for IoU/SN/PPV/F.
        output_transform, device, missing_masks, present_key, num_channels: as in :class:`PixelHistograms`.
    """

    def __init__(
        self,
        name: str = "aupr",
        channel: int | None = None,
        output_transform: Callable | None = None,
        device: str | torch.device = "cpu",
        missing_masks: str = "negative",
        present_key: str | None = None,
        threshold: float = 0.5,
        num_channels: int | None = None,
    ) -> None:
        if name not in PIXEL_METRIC_NAMES:
            raise ValueError(f"name must be one of {PIXEL_METRIC_NAMES}, got {name!r}.")
        self.name = name
        super().__init__(output_transform, device, missing_masks, present_key, num_channels, threshold)
        self._set_channels(channel, num_channels)

    @sync_all_reduce("_hist", "_abs_sum", "_pixels")
    def compute(self) -> float:
        self._check_computable()
        scores = scores_from_accumulators(self._hist, self._abs_sum, self._pixels, self.threshold)
        return _channel_or_mean([s[self.name] for s in scores], self.channel)


class RegionFMetric(LesionMetricBase):
    """Region-level ``F_sigma`` over the data set, as a scalar float.

    Args:
        sigma: overlap level in [0, 1).
        channel: channel index, or None for the mean over channels.
        output_transform, device, missing_masks, present_key, threshold, num_channels: as in :class:`PixelMetric`.
    """

    def __init__(
        self,
        sigma: float = 0.5,
        channel: int | None = None,
        output_transform: Callable | None = None,
        device: str | torch.device = "cpu",
        missing_masks: str = "negative",
        present_key: str | None = None,
        threshold: float = 0.5,
        num_channels: int | None = None,
    ) -> None:
        self.sigma = check_sigmas([sigma])[0]
        self._set_channels(channel, num_channels)
        super().__init__(output_transform, device, missing_masks, present_key, threshold)

    @reinit__is_reduced
    def reset(self) -> None:
        c = self.num_channels
        self._region = None if c is None else torch.zeros((c, 1, 3), dtype=torch.int64, device=self._device)

    def _accumulate(self, probs: torch.Tensor, target: torch.Tensor, include: torch.Tensor) -> None:
        self._check_channels(None if self._region is None else self._region.shape[0], probs.shape[1])
        counts = batch_region_counts(binarize(probs, self.threshold), target > 0.5, (self.sigma,), include)
        counts = counts.to(self._device)
        self._region = counts if self._region is None else self._region + counts

    @sync_all_reduce("_region")
    def compute(self) -> float:
        if self._region is None:
            raise NotComputableError("RegionFMetric needs at least one update before compute().")
        f = [region_scores(c, (self.sigma,))[self.sigma]["f"] for c in self._region.cpu().numpy()]
        return _channel_or_mean(f, self.channel)
