"""Region-level lesion counts (connected components, 8-connectivity) at overlap levels sigma.

For one image: TP pixels = (prediction AND truth) UNION every predicted component with
``|C_hat AND truth| / |C_hat| > sigma`` UNION every truth component with ``|C AND prediction| / |C| > sigma``;
FP = predicted pixels not in TP, FN = truth pixels not in TP. Counts are summed over the data set and give
``SN_sigma = TP / (TP + FN)``, ``PPV_sigma = TP / (TP + FP)`` and ``F_sigma`` (0 when undefined).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "DEFAULT_SIGMAS",
    "batch_region_counts",
    "check_sigmas",
    "region_counts",
    "region_scores",
]

DEFAULT_SIGMAS: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8)


def check_sigmas(sigmas: Sequence[float]) -> tuple[float, ...]:
    """Validate overlap levels: a non-empty sequence of numbers in [0, 1)."""
    sigmas = tuple(float(s) for s in sigmas)
    if not sigmas or any(not 0.0 <= s < 1.0 for s in sigmas):
        raise ValueError(f"sigmas must be a non-empty sequence of values in [0, 1), got {sigmas}.")
    return sigmas


def _component_fractions(mask: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Component labels of ``mask`` (full connectivity) and, per label, the fraction of its pixels inside ``other``."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    labels, n = ndimage.label(mask, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    inside = np.bincount(labels[other], minlength=n + 1)
    frac = np.zeros(n + 1, dtype=np.float64)
    frac[1:] = inside[1:] / np.maximum(sizes[1:], 1)
    return labels, frac


def region_counts(pred: np.ndarray, truth: np.ndarray, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> np.ndarray:
    """``[len(sigmas), 3]`` int64 array of (TP, FP, FN) pixel counts for one binary prediction and truth."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}.")
    sigmas = check_sigmas(sigmas)
    pred_labels, pred_frac = _component_fractions(pred, truth)
    truth_labels, truth_frac = _component_fractions(truth, pred)
    both = pred & truth
    out = np.zeros((len(sigmas), 3), dtype=np.int64)
    for i, sigma in enumerate(sigmas):
        keep_pred = pred_frac > sigma
        keep_truth = truth_frac > sigma
        # label 0 is the background of each labelling and never kept
        keep_pred[0] = keep_truth[0] = False
        tp = both | keep_pred[pred_labels] | keep_truth[truth_labels]
        out[i] = (tp.sum(), (pred & ~tp).sum(), (truth & ~tp).sum())
    return out


def batch_region_counts(
    pred: torch.Tensor,
    truth: torch.Tensor,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    include: torch.Tensor | None = None,
) -> torch.Tensor:
    """Region counts ``[C, len(sigmas), 3]`` (int64) summed over a batch of boolean maps ``[B, C, *spatial]``.

    ``include`` (bool ``[B, C]``) drops whole images from a channel's counts.
    """
    if pred.shape != truth.shape or pred.ndim < 3:
        raise ValueError(f"pred and truth must share a [B, C, *spatial] shape, got {pred.shape} and {truth.shape}.")
    sigmas = check_sigmas(sigmas)
    pred_np = pred.detach().cpu().numpy().astype(bool)
    truth_np = truth.detach().cpu().numpy().astype(bool)
    keep = np.ones(pred.shape[:2], dtype=bool) if include is None else include.detach().cpu().numpy().astype(bool)
    out = np.zeros((pred.shape[1], len(sigmas), 3), dtype=np.int64)
    for b in range(pred.shape[0]):
        for c in range(pred.shape[1]):
            if keep[b, c]:
                out[c] += region_counts(pred_np[b, c], truth_np[b, c], sigmas)
    return torch.from_numpy(out)


def region_scores(counts, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> dict[float, dict[str, float]]:
    """``{sigma: {"f", "sn", "ppv"}}`` from one channel's ``[len(sigmas), 3]`` counts (0 where undefined)."""
    counts = np.asarray(counts, dtype=np.int64)
    sigmas = check_sigmas(sigmas)
    if counts.shape != (len(sigmas), 3):
        raise ValueError(f"counts must have shape {(len(sigmas), 3)}, got {counts.shape}.")
    scores = {}
    for sigma, (tp, fp, fn) in zip(sigmas, counts, strict=True):
        sn = tp / (tp + fn) if tp + fn > 0 else 0.0
        ppv = tp / (tp + fp) if tp + fp > 0 else 0.0
        f = 2 * sn * ppv / (sn + ppv) if sn + ppv > 0 else 0.0
        scores[sigma] = {"f": float(f), "sn": float(sn), "ppv": float(ppv)}
    return scores
