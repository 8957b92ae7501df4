"""Probability calibration: logit histograms, isotonic (PAV) fit, expected calibration error, reliability bins."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "LOGIT_BINS",
    "LOGIT_RANGE",
    "apply_calibration",
    "calibrated_level_histograms",
    "expected_calibration_error",
    "fit_isotonic",
    "logit_bin_centres",
    "logit_histograms",
    "reliability_bins",
]

# fused logits of the shipped models span about -15..15; 0.01-wide bins keep the ranking above p = 0.99, where the
# 8-bit maps of an uncalibrated model put most exudate pixels on one level (issue figures: 69% on level 255)
LOGIT_RANGE = (-20.0, 20.0)
LOGIT_BINS = 4000


def logit_bin_centres(bins: int = LOGIT_BINS, logit_range: Sequence[float] = LOGIT_RANGE) -> np.ndarray:
    """Centres of the ``bins`` equal-width logit bins over ``logit_range`` (end bins also hold what lies beyond)."""
    low, high = float(logit_range[0]), float(logit_range[1])
    width = (high - low) / bins
    return low + width * (np.arange(bins) + 0.5)


def logit_histograms(
    logits: torch.Tensor,
    target: torch.Tensor,
    bins: int = LOGIT_BINS,
    logit_range: Sequence[float] = LOGIT_RANGE,
) -> torch.Tensor:
    """Per-channel counts of lesion and background pixels in each logit bin, ``(C, 2, bins)`` int64 (row 0: lesion).

    ``logits`` and ``target`` are ``(C, *spatial)``; ``target`` is binary. Values beyond ``logit_range`` count in the
    end bins.
    """
    if logits.shape != target.shape or logits.ndim < 2:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must be equal (C, *spatial)")
    low, high = float(logit_range[0]), float(logit_range[1])
    out = torch.zeros((logits.shape[0], 2, bins), dtype=torch.int64)
    for c in range(logits.shape[0]):
        # NaN would index no bin; the bundles stop on non-finite outputs before this, so it only guards direct use
        x = torch.nan_to_num(logits[c].reshape(-1).float(), nan=0.0)
        index = ((x - low) * (bins / (high - low))).floor_().clamp_(0, bins - 1).long()
        positive = target[c].reshape(-1) > 0
        out[c, 0] = torch.bincount(index[positive], minlength=bins).cpu()
        out[c, 1] = torch.bincount(index[~positive], minlength=bins).cpu()
    return out


def fit_isotonic(
    pos_hist: Sequence[int], neg_hist: Sequence[int], centres: Sequence[float]
) -> tuple[list[float], list[float]]:
    """Isotonic regression of the lesion frequency on the logit, by pool-adjacent-violators over histogram bins.

    Returns knots ``(logits, probabilities)``: a pooled block of several bins gets a knot at its first and at its
    last bin, both at (about) the block's lesion frequency, a block of one bin one knot. Blocks are merged while a
    later one is not strictly above the earlier, so the frequencies increase from block to block; a tiny rise across
    each pooled block keeps the piecewise-linear map through the knots strictly increasing, so it keeps every
    distinction of logit between the first and last knot (the ranking the average precision measures) while each
    pixel keeps its block's frequency (knots at the blocks' mean logits instead would interpolate across a wide block
    and miscalibrate it: expected calibration error 0.07 in-sample on the four-lesion model). Empty bins are skipped.
    (Zadrozny & Elkan, KDD 2002; the standard non-parametric calibration of a classifier's scores.)
    """
    pos = np.asarray(pos_hist, dtype=np.float64)
    neg = np.asarray(neg_hist, dtype=np.float64)
    x = np.asarray(centres, dtype=np.float64)
    if not (pos.shape == neg.shape == x.shape) or pos.ndim != 1:
        raise ValueError(f"histograms and centres must be 1-D of one length, got {pos.shape}, {neg.shape}, {x.shape}")
    weight = pos + neg
    keep = weight > 0
    if not keep.any():
        raise ValueError("no pixel to fit the calibration on (all histogram bins are empty)")
    if pos.sum() == 0:
        raise ValueError("no lesion pixel to fit the calibration on: the section holds no positive pixel")
    # blocks as [pixels, lesion pixels, first bin centre, last bin centre]
    blocks: list[list[float]] = []
    for w, p, xc in zip(weight[keep], pos[keep], x[keep]):
        blocks.append([w, p, xc, xc])
        while len(blocks) > 1 and blocks[-1][1] / blocks[-1][0] <= blocks[-2][1] / blocks[-2][0]:
            w2, p2, _, last = blocks.pop()
            blocks[-1][0] += w2
            blocks[-1][1] += p2
            blocks[-1][3] = last
    values = [b[1] / b[0] for b in blocks]
    knots_x: list[float] = []
    knots_y: list[float] = []
    for i, (block, value) in enumerate(zip(blocks, values)):
        if block[3] == block[2]:
            knots_x.append(float(block[2]))
            knots_y.append(value)
            continue
        # a pooled block spans its bins at its frequency; a small rise across it (a quarter of the gap to its
        # neighbours, at most 1e-4) keeps the pixels' order without moving them off their frequency
        gaps = [values[i] - values[i - 1]] if i > 0 else []
        gaps += [values[i + 1] - values[i]] if i + 1 < len(values) else []
        rise = min([1e-4, *(g / 4 for g in gaps)]) if gaps else 1e-4
        low, high = max(0.0, value - rise), min(1.0, value + rise)
        knots_x += [float(block[2]), float(block[3])]
        knots_y += [low, high]
    return knots_x, knots_y


def apply_calibration(logits: torch.Tensor, knots_x: Sequence[float], knots_y: Sequence[float]) -> torch.Tensor:
    """Calibrated probabilities of ``logits`` through the knots of :func:`fit_isotonic`, strictly monotone.

    Between knots: linear interpolation. Beyond the last knot the sigmoid's remaining range is mapped onto
    ``[y_last, 1)`` and below the first onto ``[0, y_first)``, so a pixel more extreme than any seen in the fit keeps
    its rank instead of sharing the end value.
    """
    xk = torch.as_tensor(knots_x, dtype=torch.float64, device=logits.device)
    yk = torch.as_tensor(knots_y, dtype=torch.float64, device=logits.device)
    if xk.ndim != 1 or xk.shape != yk.shape or xk.numel() == 0:
        raise ValueError(f"calibration knots must be two 1-D lists of one length, got {len(knots_x)}, {len(knots_y)}")
    x = logits.double()
    if xk.numel() == 1:  # one pooled block (a flat section): only the two extrapolations below
        out = torch.full_like(x, float(yk[0]))
    else:
        index = torch.searchsorted(xk, x.contiguous()).clamp_(1, xk.numel() - 1)
        x0, x1, y0, y1 = xk[index - 1], xk[index], yk[index - 1], yk[index]
        out = y0 + (y1 - y0) * ((x - x0) / (x1 - x0))
    s = torch.sigmoid(x)
    s_first, s_last = torch.sigmoid(xk[0]), torch.sigmoid(xk[-1])
    above = yk[-1] + (1.0 - yk[-1]) * (s - s_last) / (1.0 - s_last).clamp_min(1e-300)
    below = yk[0] * s / s_first
    out = torch.where(x > xk[-1], above, out)
    out = torch.where(x < xk[0], below, out)
    return out.clamp_(0.0, 1.0).to(logits.dtype if logits.is_floating_point() else torch.float32)


def calibrated_level_histograms(
    hist: torch.Tensor | np.ndarray,
    centres: Sequence[float],
    knots: tuple[Sequence[float], Sequence[float]] | None,
) -> np.ndarray:
    """8-bit level histograms ``(2, 256)`` (row 0: lesion) of one channel's logit histogram ``(2, bins)``, each bin
    taken at its centre through the calibration ``knots`` (None: the sigmoid)."""
    hist = np.asarray(hist, dtype=np.int64)
    x = torch.as_tensor(np.asarray(centres, dtype=np.float64))
    prob = torch.sigmoid(x) if knots is None else apply_calibration(x, *knots)
    levels = np.rint(prob.numpy() * 255.0).astype(np.int64)
    out = np.zeros((2, 256), dtype=np.int64)
    for row in range(2):
        np.add.at(out[row], levels, hist[row])
    return out


def reliability_bins(level_hist: np.ndarray, num_bins: int = 10) -> list[dict[str, float]]:
    """Reliability diagram rows of 8-bit level histograms ``(2, 256)``: per equal-width probability bin, its pixel
    count, mean predicted probability (``confidence``) and lesion frequency (``frequency``); empty bins left out."""
    hist = np.asarray(level_hist, dtype=np.float64)
    levels = np.arange(hist.shape[1]) / (hist.shape[1] - 1)
    which = np.minimum((levels * num_bins).astype(int), num_bins - 1)
    rows = []
    for b in range(num_bins):
        sel = which == b
        pos, neg = hist[0, sel].sum(), hist[1, sel].sum()
        n = pos + neg
        if n == 0:
            continue
        conf = float(((hist[0, sel] + hist[1, sel]) * levels[sel]).sum() / n)
        rows.append({"low": b / num_bins, "high": (b + 1) / num_bins, "pixels": int(n), "confidence": conf,
                     "frequency": float(pos / n)})  # fmt: skip
    return rows


def expected_calibration_error(level_hist: np.ndarray, num_bins: int = 10) -> float:
    """Expected calibration error of 8-bit level histograms ``(2, 256)``: the pixel-weighted mean of
    ``|frequency - confidence|`` over ``num_bins`` equal-width probability bins (Naeini et al., AAAI 2015)."""
    rows = reliability_bins(level_hist, num_bins)
    total = sum(r["pixels"] for r in rows)
    if total == 0:
        return 0.0
    return float(sum(r["pixels"] * abs(r["frequency"] - r["confidence"]) for r in rows) / total)
