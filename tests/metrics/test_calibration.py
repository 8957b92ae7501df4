"""Calibration maths: logit histograms, the isotonic fit, its strictly monotone map, ECE and average precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_exudate.metrics.calibration import (
    apply_calibration,
    calibrated_level_histograms,
    expected_calibration_error,
    fit_isotonic,
    logit_bin_centres,
    logit_histograms,
    reliability_bins,
)
from monai_exudate.metrics.pixel import average_precision_from_histograms


def _overconfident(n: int = 200_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a model whose true lesion probability is sigmoid((x - 8) / 2): sigmoid(x) is far too confident."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, generator=generator) * 6 + 4
    y = (torch.rand(1, n, generator=generator) < torch.sigmoid((x - 8) / 2)).float()
    return x, y


def test_logit_histograms_count_every_pixel_once_by_class():
    x = torch.tensor([[-30.0, -0.001, 0.001, 30.0]])
    y = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    hist = logit_histograms(x, y)
    assert hist.shape == (1, 2, 4000)
    assert int(hist[0, 0].sum()) == 2 and int(hist[0, 1].sum()) == 2
    assert hist[0, 1, 0] == 1 and hist[0, 0, -1] == 1  # beyond the range: the end bins
    assert hist[0, 0, 1999] == 1 and hist[0, 1, 2000] == 1  # either side of 0
    with pytest.raises(ValueError, match="must be equal"):
        logit_histograms(x, y[:, :2])


def test_isotonic_fit_pools_violators_into_increasing_blocks():
    centres = np.array([0.0, 1.0, 2.0, 3.0])
    # frequencies 0.5, 0.25, 0.75, 1.0: the first two pool to 3/8 across both their bins
    pos, neg = np.array([2, 1, 3, 4]), np.array([2, 3, 1, 0])
    x, y = fit_isotonic(pos, neg, centres)
    assert x == pytest.approx([0.0, 1.0, 2.0, 3.0]) and y == pytest.approx([3 / 8, 3 / 8, 0.75, 1.0], abs=1e-4)
    assert all(b > a for a, b in zip(y, y[1:]))  # strictly: the pooled pixels keep their order


def test_isotonic_fit_refuses_empty_or_lesion_free_sections():
    centres = logit_bin_centres()
    with pytest.raises(ValueError, match="no pixel"):
        fit_isotonic(np.zeros(4000), np.zeros(4000), centres)
    with pytest.raises(ValueError, match="no lesion pixel"):
        fit_isotonic(np.zeros(4000), np.ones(4000), centres)


def test_calibration_keeps_the_ranking_and_removes_overconfidence():
    x, y = _overconfident()
    hist = logit_histograms(x, y)
    centres = logit_bin_centres()
    knots = fit_isotonic(hist[0, 0], hist[0, 1], centres)
    q = apply_calibration(x[0], *knots)
    order = torch.argsort(x[0])
    assert bool((q[order][1:] >= q[order][:-1]).all())  # monotone in the logit
    # pixels beyond the knots keep their order instead of sharing the end value
    first, last = knots[0][0], knots[0][-1]
    far = apply_calibration(torch.tensor([last + 1.0, last + 2.0, first - 2.0, first - 1.0]), *knots)
    assert far[1] > far[0] and far[3] >= far[2]
    raw = calibrated_level_histograms(hist[0], centres, None)
    cal = calibrated_level_histograms(hist[0], centres, knots)
    assert raw.sum() == cal.sum() == x.numel()
    assert expected_calibration_error(cal) < 0.1 * expected_calibration_error(raw)
    assert expected_calibration_error(cal) < 0.002  # in-sample: each pixel sits at its block's frequency
    # quantised to 8 bits, the calibrated map keeps more of the ranking than the saturated sigmoid
    assert average_precision_from_histograms(*cal) > average_precision_from_histograms(*raw)


def test_average_precision_matches_the_step_definition_on_raw_scores():
    rng = np.random.default_rng(1)
    levels = rng.integers(0, 256, 5000)
    labels = rng.random(5000) < levels / 400
    pos = np.bincount(levels[labels], minlength=256)
    neg = np.bincount(levels[~labels], minlength=256)
    # sklearn's average_precision_score: sum over distinct scores (descending) of recall gain x precision
    expected, tp_seen = 0.0, 0
    for level in range(255, -1, -1):
        at = levels >= level
        tp = int((at & labels).sum())
        if tp > tp_seen:
            expected += (tp - tp_seen) / labels.sum() * tp / at.sum()
            tp_seen = tp
    assert average_precision_from_histograms(pos, neg) == pytest.approx(expected)
    assert average_precision_from_histograms(np.zeros(256), neg) == 0.0


def test_reliability_bins_and_ece_of_a_perfect_map():
    hist = np.zeros((2, 256), dtype=np.int64)
    hist[0, 255], hist[1, 0] = 100, 100  # certain and right
    rows = reliability_bins(hist)
    assert [r["pixels"] for r in rows] == [100, 100]
    assert expected_calibration_error(hist) == pytest.approx(0.0)
    hist[1, 255] = 100  # half of the p = 1 pixels are background
    assert expected_calibration_error(hist) == pytest.approx(200 * 0.5 / 300)


def test_one_knot_still_keeps_the_ranking():
    """A flat section pools into one block: the map stays monotone around it instead of turning constant."""
    q = apply_calibration(torch.tensor([-3.0, 0.0, 1.0, 3.0]), [1.0], [0.2])
    assert q[2] == pytest.approx(0.2) and bool((q[1:] > q[:-1]).all())


def test_nan_logits_do_not_break_the_histograms():
    hist = logit_histograms(torch.tensor([[float("nan"), 1.0]]), torch.tensor([[1.0, 0.0]]))
    assert int(hist.sum()) == 2
