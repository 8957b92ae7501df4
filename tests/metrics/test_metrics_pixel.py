"""Tests for the streaming pixel metrics and AUPR."""

import numpy as np
import pytest
import torch
from ignite.exceptions import NotComputableError

from monai_exudate.metrics import (
    LesionMetricsReport,
    PixelHistograms,
    aupr_from_histograms,
    counts_at_threshold,
    pixel_histograms,
    pixel_scores,
    precision_recall_points,
    quantize,
    trapezoid_auc,
)

PROBS = torch.tensor([[0.95, 0.6, 0.2], [0.4, 0.72, 0.0]]).reshape(1, 1, 2, 3)
TRUTH = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]).reshape(1, 1, 2, 3)


def _hist(probs, truth):
    h = pixel_histograms(probs, truth)[0]
    return h[1].numpy(), h[0].numpy()


def test_quantize_half_up():
    assert quantize(torch.tensor([0.0, 0.95, 0.72, 0.5, 1.0])).tolist() == [0, 242, 184, 128, 255]


def test_pixel_scores_hand_computed():
    pos, neg = _hist(PROBS, TRUTH)
    tp, fp, fn = counts_at_threshold(pos, neg, 0.5)
    assert (tp, fp, fn) == (2, 1, 1)
    s = pixel_scores(tp, fp, fn)
    assert s["iou"] == pytest.approx(0.5)
    assert s["sn"] == pytest.approx(2 / 3)
    assert s["ppv"] == pytest.approx(2 / 3)
    assert s["f"] == pytest.approx(2 / 3)
    s = pixel_scores(3, 1, 2)
    assert (s["iou"], s["sn"], s["ppv"]) == pytest.approx((0.5, 0.6, 0.75))
    assert s["f"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)


def test_zero_division_rule():
    assert pixel_scores(0, 0, 0) == {"iou": 0.0, "sn": 0.0, "ppv": 0.0, "f": 0.0}
    assert pixel_scores(0, 3, 0)["ppv"] == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        pixel_scores(-1, 0, 0)


def test_hand_computed_curve():
    pos, neg = _hist(PROBS, TRUTH)
    recall, precision = precision_recall_points(pos, neg)
    third = 1 / 3
    np.testing.assert_allclose(recall, [1, 1, 1, 1, 2 * third, 2 * third, third, third, third, third, 0, 0])
    np.testing.assert_allclose(precision, [0.6, 0.6, 0.75, 0.75, 2 * third, 2 * third, 0.5, 0.5, 1, 1, 1, 1])
    # trapezoids: (0.75 + 2/3) / 2 / 3 + (2/3 + 1/2) / 2 / 3 + 1 / 3 = 55 / 72
    assert aupr_from_histograms(pos, neg) == pytest.approx(55 / 72)


def test_matches_sklearn_auc_when_available():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    truth = (torch.rand(1, 1, 32, 32, generator=g) < 0.2).float()
    probs = (0.6 * truth + 0.5 * torch.rand(1, 1, 32, 32, generator=g)).clamp(0, 1)
    pos, neg = _hist(probs, truth)
    recall, precision = precision_recall_points(pos, neg)
    assert aupr_from_histograms(pos, neg) == pytest.approx(metrics.auc(recall, precision))
    x = np.array([0.0, 0.2, 0.2, 1.0])
    y = np.array([1.0, 0.5, 0.4, 0.3])
    assert trapezoid_auc(x, y) == pytest.approx(metrics.auc(x, y))
    assert trapezoid_auc(x[::-1], y[::-1]) == pytest.approx(metrics.auc(x[::-1], y[::-1]))


def test_trapezoid_rule():
    assert trapezoid_auc([0, 1], [1, 1]) == 1.0
    assert trapezoid_auc([1, 0], [1, 1]) == 1.0
    assert trapezoid_auc([0, 0, 0], [1, 0.5, 1]) == 0.0
    with pytest.raises(ValueError, match="neither increasing nor decreasing"):
        trapezoid_auc([0, 1, 0.5], [1, 1, 1])


def test_perfect_prediction_aupr_one():
    truth = torch.zeros(1, 1, 8, 8)
    truth[0, 0, 2:4, 2:5] = 1
    pos, neg = _hist(truth.clone(), truth)
    assert aupr_from_histograms(pos, neg) == pytest.approx(1.0)


def test_saturated_output_closes_curve():
    # two positives and two negatives predicted at exactly 1.0, two negatives at 0
    probs = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 1, 6)
    truth = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]).reshape(1, 1, 1, 6)
    pos, neg = _hist(probs, truth)
    recall, precision = precision_recall_points(pos, neg)
    assert recall[-2:].tolist() == [0.0, 0.0] and precision[-2:].tolist() == [1.0, 1.0]
    # precision 0.5 at recall 1, closed by a trapezoid down to (0, 1)
    assert aupr_from_histograms(pos, neg) == pytest.approx(0.75)


def test_no_positive_in_set():
    probs = torch.full((1, 1, 4, 4), 0.8)
    pos, neg = _hist(probs, torch.zeros(1, 1, 4, 4))
    assert aupr_from_histograms(pos, neg) == 0.0


def _report(missing_masks: str = "negative") -> LesionMetricsReport:
    return LesionMetricsReport(["EX"], flat=False, missing_masks=missing_masks)


def test_streaming_pixel_scores_and_mae():
    report = _report()
    report.update((PROBS[..., :1], TRUTH[..., :1]))
    report.update((PROBS[..., 1:], TRUTH[..., 1:]))
    res = report.compute()["lesions"]["EX"]
    assert (res["tp"], res["fp"], res["fn"]) == (2, 1, 1)
    assert res["iou"] == pytest.approx(0.5)
    assert res["aupr"] == pytest.approx(55 / 72)
    # |p - y|: 0.05, 0.4, 0.2, 0.6, 0.72, 0.0
    assert res["mae"] == pytest.approx(1.97 / 6)
    report.reset()
    with pytest.raises(NotComputableError, match="update"):
        report.compute()


def test_missing_masks_rules():
    probs = torch.tensor([0.9, 0.9, 0.9, 0.1]).reshape(2, 1, 1, 2)
    truth = torch.tensor([1.0, 0.0, 1.0, 0.0]).reshape(2, 1, 1, 2)
    present = torch.tensor([[True], [False]])
    negative = _report("negative")
    negative.update((probs, truth, present))
    r = negative.compute()["lesions"]["EX"]
    # image 2 counts as lesion-free: its prediction at 0.9 becomes a false positive
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 0)
    ignore = _report("ignore")
    ignore.update((probs, truth, present))
    r = ignore.compute()["lesions"]["EX"]
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 0)
    assert r["mae"] == pytest.approx((0.1 + 0.9) / 2)
    with pytest.raises(ValueError, match="missing_masks"):
        PixelHistograms(missing_masks="skip")


def test_input_validation():
    with pytest.raises(ValueError, match="probabilities"):
        PixelHistograms().update((torch.full((1, 1, 2, 2), 1.5), torch.zeros(1, 1, 2, 2)))
    with pytest.raises(ValueError, match="same shape"):
        PixelHistograms().update((torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, 2)))
    with pytest.raises(ValueError, match="present"):
        PixelHistograms().update((torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 2, dtype=torch.bool)))
    histograms = PixelHistograms()
    histograms.update((torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)))
    with pytest.raises(ValueError, match="channels"):
        histograms.update((torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)))
