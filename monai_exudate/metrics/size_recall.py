"""Lesion recall by size: ground-truth components (8-connectivity) binned by area, detected when mostly predicted.

A truth component of area ``a`` pixels falls in bin ``i`` when ``edges[i] <= a < edges[i + 1]`` and counts as
detected when the fraction of its pixels predicted positive is ``>= hit_fraction``. The recall of a bin with no
component is ``None`` (JSON-safe "not defined").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "DEFAULT_SIZE_BINS",
    "batch_size_counts",
    "check_size_bins",
    "lesion_size_counts",
    "recall_by_size",
    "size_bin_labels",
]

DEFAULT_SIZE_BINS: tuple[float, ...] = (0, 25, 100, 400, 1600, math.inf)


def check_size_bins(bin_edges: Sequence[float]) -> tuple[float, ...]:
    """Validate bin edges: at least two, non-negative, strictly increasing."""
    edges = tuple(float(e) for e in bin_edges)
    if len(edges) < 2 or edges[0] < 0 or any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True)):
        raise ValueError(f"bin_edges must be >= 2 non-negative, strictly increasing values, got {edges}.")
    return edges


def _check_hit_fraction(hit_fraction: float) -> float:
    if not 0.0 < hit_fraction <= 1.0:
        raise ValueError(f"hit_fraction must lie in (0, 1], got {hit_fraction}.")
    return float(hit_fraction)


def size_bin_labels(bin_edges: Sequence[float] = DEFAULT_SIZE_BINS) -> list[str]:
    """Names ``"lo-hi"`` of the bins, e.g. ``"0-25"``, ``"1600-inf"``."""
    edges = check_size_bins(bin_edges)
    return [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]


def lesion_size_counts(
    pred: np.ndarray, truth: np.ndarray, bin_edges: Sequence[float] = DEFAULT_SIZE_BINS, hit_fraction: float = 0.5
) -> np.ndarray:
    """``[num_bins, 2]`` int64 array of (detected, total) truth components per size bin for one image."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}.")
    edges = np.asarray(check_size_bins(bin_edges))
    hit_fraction = _check_hit_fraction(hit_fraction)
    out = np.zeros((len(edges) - 1, 2), dtype=np.int64)
    labels, n = ndimage.label(truth, structure=ndimage.generate_binary_structure(truth.ndim, truth.ndim))
    if n == 0:
        return out
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    hits = np.bincount(labels[pred], minlength=n + 1)[1:]
    detected = hits >= hit_fraction * areas
    bins = np.searchsorted(edges, areas, side="right") - 1
    # components outside [edges[0], edges[-1]) are not counted in any bin
    valid = (bins >= 0) & (bins < len(edges) - 1)
    np.add.at(out[:, 0], bins[valid], detected[valid].astype(np.int64))
    np.add.at(out[:, 1], bins[valid], 1)
    return out


def batch_size_counts(
    pred: torch.Tensor,
    truth: torch.Tensor,
    bin_edges: Sequence[float] = DEFAULT_SIZE_BINS,
    hit_fraction: float = 0.5,
    include: torch.Tensor | None = None,
) -> torch.Tensor:
    """Size counts ``[C, num_bins, 2]`` (int64) summed over a batch of boolean maps ``[B, C, *spatial]``."""
    if pred.shape != truth.shape or pred.ndim < 3:
        raise ValueError(f"pred and truth must share a [B, C, *spatial] shape, got {pred.shape} and {truth.shape}.")
    edges = check_size_bins(bin_edges)
    pred_np = pred.detach().cpu().numpy().astype(bool)
    truth_np = truth.detach().cpu().numpy().astype(bool)
    keep = np.ones(pred.shape[:2], dtype=bool) if include is None else include.detach().cpu().numpy().astype(bool)
    out = np.zeros((pred.shape[1], len(edges) - 1, 2), dtype=np.int64)
    for b in range(pred.shape[0]):
        for c in range(pred.shape[1]):
            if keep[b, c]:
                out[c] += lesion_size_counts(pred_np[b, c], truth_np[b, c], edges, hit_fraction)
    return torch.from_numpy(out)


def recall_by_size(counts, bin_edges: Sequence[float] = DEFAULT_SIZE_BINS) -> dict[str, dict[str, float | int | None]]:
    """``{bin label: {"recall", "detected", "total"}}`` from one channel's ``[num_bins, 2]`` counts.

    The recall of a bin without any lesion component is None.
    """
    counts = np.asarray(counts, dtype=np.int64)
    labels = size_bin_labels(bin_edges)
    if counts.shape != (len(labels), 2):
        raise ValueError(f"counts must have shape {(len(labels), 2)}, got {counts.shape}.")
    return {
        label: {"recall": float(det) / float(tot) if tot > 0 else None, "detected": int(det), "total": int(tot)}
        for label, (det, tot) in zip(labels, counts, strict=True)
    }
