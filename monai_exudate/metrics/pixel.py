"""Pixel-level lesion metrics from streaming 8-bit probability histograms: IoU, SN, PPV, F, AUPR and MAE.

Probabilities are quantised to 8 bits, ``q = round(p * 255)`` (half up), as the authors' evaluation reads 8-bit
probability maps. Per channel, 256-bin histograms of ``q`` over positive and negative pixels give TP/FP/FN at any
threshold without storing the maps; a pixel is predicted positive at threshold ``t`` when ``q / 255 > t`` (strict).

Zero-division rule: IoU, SN, PPV and F are 0 when their denominator is 0 (so an empty prediction on an empty truth
scores 0, not 1); within the AUPR curve a threshold predicting nothing has precision 1 and recall 0, and recall is 0
when the set holds no positive pixel (AUPR is then 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "AUPR_THRESHOLDS",
    "average_precision_from_histograms",
    "LEVELS",
    "MISSING_MASK_RULES",
    "absolute_error_sums",
    "aupr_from_histograms",
    "binarize",
    "check_probabilities",
    "counts_at_threshold",
    "f_maximising_threshold",
    "pixel_histograms",
    "pixel_scores",
    "precision_recall_points",
    "quantize",
    "resolve_missing_masks",
    "scores_from_accumulators",
    "trapezoid_auc",
]

LEVELS = 256
AUPR_THRESHOLDS: tuple[float, ...] = tuple(k / 10 for k in range(11))
MISSING_MASK_RULES = ("negative", "ignore")


def check_probabilities(probs: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ValueError unless ``probs`` and ``target`` share a ``[B, C, *spatial]`` shape and probs lie in [0, 1]."""
    if probs.shape != target.shape:
        raise ValueError(
            f"probs and target must have the same shape, got {tuple(probs.shape)} and {tuple(target.shape)}."
        )
    if probs.ndim < 3:
        raise ValueError(f"probs must have shape [B, C, *spatial], got {tuple(probs.shape)}.")
    if probs.numel():
        low, high = torch.aminmax(probs)
        if float(low) < 0.0 or float(high) > 1.0:
            raise ValueError("probs must be probabilities in [0, 1] (apply a sigmoid to logits first).")


def quantize(probs: torch.Tensor) -> torch.Tensor:
    """8-bit levels ``round(p * 255)`` (half up) as int64, computed in float64 from the stored values."""
    levels = probs.double().mul_(LEVELS - 1).add_(0.5).floor_().clamp_(0, LEVELS - 1)
    return levels.long()


def binarize(probs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Boolean prediction ``q / 255 > threshold`` on the 8-bit levels (the rule used for every metric here)."""
    return quantize(probs).double() / (LEVELS - 1) > threshold


def resolve_missing_masks(
    target: torch.Tensor, present: torch.Tensor | None, missing_masks: str = "negative"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the missing-mask rule; returns ``(target, include)`` with ``include`` a bool ``[B, C]`` image mask.

    ``present[b, c]`` False means image ``b`` has no ground-truth file for lesion ``c``. ``"negative"``: the image
    counts with an empty mask for that lesion (IDRiD convention: no file, no annotated lesion); ``"ignore"``: the
    image is left out of that lesion's counts.
    """
    if missing_masks not in MISSING_MASK_RULES:
        raise ValueError(f"missing_masks must be one of {MISSING_MASK_RULES}, got {missing_masks!r}.")
    b, c = target.shape[:2]
    if present is None:
        return target, torch.ones((b, c), dtype=torch.bool, device=target.device)
    present = torch.as_tensor(present, device=target.device).bool()
    if present.shape != (b, c):
        raise ValueError(f"present must have shape [B, C] = {(b, c)}, got {tuple(present.shape)}.")
    view = present.reshape(b, c, *([1] * (target.ndim - 2)))
    target = torch.where(view, target, torch.zeros_like(target))
    if missing_masks == "negative":
        return target, torch.ones_like(present)
    return target, present


def pixel_histograms(probs: torch.Tensor, target: torch.Tensor, include: torch.Tensor | None = None) -> torch.Tensor:
    """Histograms ``[C, 2, 256]`` (int64) of the 8-bit levels over negative (index 0) and positive (1) pixels.

    ``include`` (bool ``[B, C]``) drops whole images from a channel's histograms.
    """
    check_probabilities(probs, target)
    c = probs.shape[1]
    q = quantize(probs)
    pos = (target > 0.5).long()
    chan = torch.arange(c, device=probs.device).reshape(1, c, *([1] * (probs.ndim - 2)))
    index = (chan * 2 + pos) * LEVELS + q
    if include is not None and not bool(include.all()):
        mask = include.to(probs.device).bool().reshape(*include.shape, *([1] * (probs.ndim - 2))).expand_as(index)
        index = index[mask]
    return torch.bincount(index.reshape(-1), minlength=c * 2 * LEVELS).reshape(c, 2, LEVELS)


def absolute_error_sums(
    probs: torch.Tensor, target: torch.Tensor, include: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``sum |p - y|`` (float64) and pixel counts (int64) over the included images."""
    check_probabilities(probs, target)
    dims = [0, *range(2, probs.ndim)]
    # at least single precision: half-precision differences would blur the MAE
    work = probs if probs.dtype in (torch.float32, torch.float64) else probs.float()
    err = (work - (target > 0.5).to(work.dtype)).abs_()
    per_image = probs[0, 0].numel()
    if include is None:
        sums = err.sum(dims, dtype=torch.float64)
        return sums, torch.full((probs.shape[1],), probs.shape[0] * per_image, device=probs.device)
    keep = include.to(probs.device).bool()
    err = err * keep.to(err.dtype).reshape(*keep.shape, *([1] * (probs.ndim - 2)))
    return err.sum(dims, dtype=torch.float64), keep.long().sum(0) * per_image


def counts_at_threshold(pos_hist, neg_hist, threshold: float = 0.5) -> tuple[int, int, int]:
    """``(TP, FP, FN)`` for one channel's level histograms at ``q / 255 > threshold``."""
    pos_hist = np.asarray(pos_hist, dtype=np.int64)
    neg_hist = np.asarray(neg_hist, dtype=np.int64)
    levels = pos_hist.shape[-1]
    above = np.arange(levels) / (levels - 1) > threshold
    tp = int(pos_hist[above].sum())
    fp = int(neg_hist[above].sum())
    return tp, fp, int(pos_hist.sum()) - tp


def f_maximising_threshold(pos_hist, neg_hist) -> tuple[float, float]:
    """``(threshold, F)`` of the F-maximising operating point of one channel's 8-bit level histograms.

    Candidates are the 255 cuts between adjacent levels; the threshold is returned mid-way between the two levels,
    ``(k + 0.5) / 255``, so ``q / 255 > threshold`` selects exactly the levels above ``k``. Ties go to the cut nearest
    0.5; without any positive pixel the result is ``(0.5, 0.0)``.
    """
    pos_hist = np.asarray(pos_hist, dtype=np.int64)
    neg_hist = np.asarray(neg_hist, dtype=np.int64)
    if pos_hist.shape != neg_hist.shape or pos_hist.ndim != 1 or pos_hist.size < 2:
        raise ValueError(f"histograms must be 1-D of the same length >= 2, got {pos_hist.shape} and {neg_hist.shape}.")
    total = int(pos_hist.sum())
    if total == 0:
        return 0.5, 0.0
    levels = pos_hist.size
    # tp[k], fp[k]: pixels with level > k, for the cuts k = 0 .. levels - 2
    tp = np.cumsum(pos_hist[::-1])[::-1][1:].astype(np.float64)
    fp = np.cumsum(neg_hist[::-1])[::-1][1:].astype(np.float64)
    f = 2.0 * tp / np.maximum(tp + fp + total, 1.0)
    thresholds = (np.arange(levels - 1) + 0.5) / (levels - 1)
    best = np.flatnonzero(f == f.max())
    k = int(best[np.argmin(np.abs(thresholds[best] - 0.5))])
    return float(thresholds[k]), float(f[k])


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def pixel_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """``iou = TP/(TP+FP+FN)``, ``sn = TP/(TP+FN)``, ``ppv = TP/(TP+FP)``, ``f = 2*sn*ppv/(sn+ppv)``.

    A score whose denominator is 0 is 0.
    """
    if min(tp, fp, fn) < 0:
        raise ValueError(f"counts must be non-negative, got tp={tp}, fp={fp}, fn={fn}.")
    sn = _ratio(tp, tp + fn)
    ppv = _ratio(tp, tp + fp)
    return {"iou": _ratio(tp, tp + fp + fn), "sn": sn, "ppv": ppv, "f": _ratio(2.0 * sn * ppv, sn + ppv)}


def precision_recall_points(
    pos_hist, neg_hist, thresholds: Sequence[float] = AUPR_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at each threshold (in the given order), then the appended point (recall 0, precision 1)."""
    recall, precision = [], []
    for t in thresholds:
        tp, fp, fn = counts_at_threshold(pos_hist, neg_hist, t)
        predicted = tp + fp
        precision.append(tp / predicted if predicted > 0 else 1.0)
        recall.append(tp / (tp + fn) if tp + fn > 0 else 0.0)
    return np.asarray(recall + [0.0]), np.asarray(precision + [1.0])


def trapezoid_auc(x, y) -> float:
    """Trapezoid area under ``y(x)`` with the rule of ``sklearn.metrics.auc``.

    ``x`` must be monotonic: non-decreasing gives the signed trapezoid area; non-increasing with at least one
    decrease gives the negated area (so a curve traced from high to low x has positive area); otherwise ValueError.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got {x.shape} and {y.shape}.")
    dx = np.diff(x)
    direction = 1.0
    if np.any(dx < 0):
        if not np.all(dx <= 0):
            raise ValueError(f"x is neither increasing nor decreasing: {x}.")
        direction = -1.0
    return float(direction * np.sum(dx * (y[1:] + y[:-1]) / 2.0))


def aupr_from_histograms(pos_hist, neg_hist, thresholds: Sequence[float] = AUPR_THRESHOLDS) -> float:
    """Area under the precision-recall points of :func:`precision_recall_points` (threshold order)."""
    recall, precision = precision_recall_points(pos_hist, neg_hist, thresholds)
    return trapezoid_auc(recall, precision)


def average_precision_from_histograms(pos_hist, neg_hist) -> float:
    """Average precision over every level of the histograms: ``sum_k (R_k - R_{k+1}) * P_k`` with ``P_k``, ``R_k``
    the precision and recall of the pixels at level ``k`` or above (the step-wise area of
    ``sklearn.metrics.average_precision_score`` on the quantised scores). Unlike the 11-threshold AUPR it does not
    interpolate between distant operating points, so a weak map scores low; 0.0 without a positive pixel."""
    pos = np.asarray(pos_hist, dtype=np.float64)
    neg = np.asarray(neg_hist, dtype=np.float64)
    if pos.shape != neg.shape or pos.ndim != 1:
        raise ValueError(f"histograms must be 1-D of the same length, got {pos.shape} and {neg.shape}.")
    total = pos.sum()
    if total == 0:
        return 0.0
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.ones_like(tp), where=predicted > 0)
    return float(np.sum((pos[::-1] / total) * precision))


def scores_from_accumulators(
    hist: torch.Tensor, abs_sum: torch.Tensor, pixels: torch.Tensor, threshold: float = 0.5
) -> list[dict[str, float]]:
    """Per-channel ``{iou, sn, ppv, f, aupr, mae, tp, fp, fn}`` from accumulated histograms and error sums."""
    hist_np = hist.detach().cpu().numpy()
    abs_np = abs_sum.detach().cpu().numpy()
    pix_np = pixels.detach().cpu().numpy()
    results = []
    for c in range(hist_np.shape[0]):
        neg, pos = hist_np[c, 0], hist_np[c, 1]
        tp, fp, fn = counts_at_threshold(pos, neg, threshold)
        scores = pixel_scores(tp, fp, fn)
        scores["aupr"] = aupr_from_histograms(pos, neg)
        scores["mae"] = _ratio(abs_np[c], pix_np[c])
        scores.update(tp=tp, fp=fp, fn=fn)
        results.append(scores)
    return results
