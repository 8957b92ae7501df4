"""Tests for the region-level counts and the size-binned lesion recall."""

import math

import numpy as np
import pytest
import torch

from monai_exudate.metrics import LesionMetricsReport, lesion_size_counts, recall_by_size, region_counts
from monai_exudate.metrics.region import region_scores


def _blob_case():
    truth = np.zeros((10, 12), bool)
    truth[1:3, 1:6] = True  # 10 truth pixels
    pred = np.zeros_like(truth)
    pred[1:3, 0:4] = True  # 8 predicted pixels, 6 of them on the truth component (60% of it)
    return pred, truth


def test_region_counts_blob():
    pred, truth = _blob_case()
    counts = region_counts(pred, truth, (0.5, 0.65, 0.8))
    # 0.5: predicted comp (6/8 = 0.75) and truth comp (6/10 = 0.6) both kept: TP = union = 12
    # 0.65: only the predicted comp kept: TP = 8, FN = 4
    # 0.8: neither: TP = overlap = 6, FP = 2, FN = 4
    assert counts.tolist() == [[12, 0, 0], [8, 0, 4], [6, 2, 4]]
    scores = region_scores(counts, (0.5, 0.65, 0.8))
    assert scores[0.5]["f"] == pytest.approx(1.0)
    assert scores[0.65] == pytest.approx({"f": 0.8, "sn": 2 / 3, "ppv": 1.0})
    assert scores[0.8]["sn"] == pytest.approx(0.6) and scores[0.8]["ppv"] == pytest.approx(0.75)
    assert scores[0.8]["f"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)


def test_isolated_false_positive():
    pred, truth = _blob_case()
    pred[8, 10] = True
    counts = region_counts(pred, truth, (0.5,))
    assert counts.tolist() == [[12, 1, 0]]


def test_eight_connectivity_and_strict_threshold():
    truth = np.zeros((6, 6), bool)
    truth[2, 2] = truth[3, 3] = True  # diagonal neighbours: one component under 8-connectivity
    pred = np.zeros_like(truth)
    pred[2, 2] = True
    counts = region_counts(pred, truth, (0.35, 0.5))
    # truth component half covered: kept at 0.35, not at 0.5 (strict >)
    assert counts.tolist() == [[2, 0, 0], [1, 0, 1]]


def test_empty_images():
    empty = np.zeros((4, 4), bool)
    assert region_counts(empty, empty).tolist() == [[0, 0, 0]] * 5
    scores = region_scores(region_counts(empty, empty))
    assert all(v == {"f": 0.0, "sn": 0.0, "ppv": 0.0} for v in scores.values())
    with pytest.raises(ValueError, match="sigmas"):
        region_counts(empty, empty, (1.2,))


def _region_f(probs, target, present=None, missing_masks="negative") -> float:
    report = LesionMetricsReport(["EX"], sigmas=(0.65,), flat=False, missing_masks=missing_masks)
    report.update((probs, target) if present is None else (probs, target, present))
    return report.compute()["lesions"]["EX"]["region"]["0.65"]["f"]


def test_region_scores_over_a_set():
    pred, truth = _blob_case()
    probs = torch.from_numpy(pred).float().reshape(1, 1, 10, 12) * 0.9
    target = torch.from_numpy(truth).float().reshape(1, 1, 10, 12)
    # counts (TP 8, FP 0, FN 4) per image, summed over the set
    assert _region_f(torch.cat([probs, probs]), torch.cat([target, target])) == pytest.approx(0.8)
    # a missing mask: ignored, the second image changes nothing; negative, its prediction is all false positive
    present = torch.tensor([[True], [False]])
    both, absent = torch.cat([probs, probs]), torch.cat([target, torch.zeros_like(target)])
    assert _region_f(both, torch.cat([target, target]), present, "ignore") == pytest.approx(0.8)
    assert _region_f(both, absent, present, "negative") == pytest.approx(2 * 8 / (2 * 8 + 8 + 4))


def _size_case():
    truth = np.zeros((20, 30), bool)
    pred = np.zeros_like(truth)
    truth[1:4, 1:4] = True  # area 9 -> bin 0-25
    pred[1:4, 1:3] = True
    pred[1, 3] = True  # 7 of 9 predicted: detected
    truth[8:14, 1:7] = True  # area 36 -> bin 25-100
    pred[8:10, 1:7] = True
    pred[10, 1:6] = True  # 17 of 36 predicted: missed
    truth[1:6, 20:25] = True  # area 25 -> bin 25-100 (left-closed bins)
    pred[1:6, 20:25] = True  # fully predicted: detected
    return pred, truth


def test_size_binned_recall():
    pred, truth = _size_case()
    counts = lesion_size_counts(pred, truth)
    assert counts.tolist() == [[1, 1], [1, 2], [0, 0], [0, 0], [0, 0]]
    recall = recall_by_size(counts)
    assert list(recall) == ["0-25", "25-100", "100-400", "400-1600", "1600-inf"]
    assert recall["0-25"]["recall"] == 1.0 and recall["25-100"]["recall"] == 0.5
    assert recall["400-1600"] == {"recall": None, "detected": 0, "total": 0}


def test_hit_fraction_and_custom_bins():
    pred, truth = _size_case()
    # at hit_fraction 0.8 the 7/9 component is missed too
    assert lesion_size_counts(pred, truth, hit_fraction=0.8).tolist()[:2] == [[0, 1], [1, 2]]
    counts = lesion_size_counts(pred, truth, bin_edges=(0, 30, math.inf))
    assert counts.tolist() == [[2, 2], [0, 1]]
    with pytest.raises(ValueError, match="bin_edges"):
        lesion_size_counts(pred, truth, bin_edges=(10, 5))
    with pytest.raises(ValueError, match="hit_fraction"):
        lesion_size_counts(pred, truth, hit_fraction=0.0)


def test_size_recall_over_a_set():
    pred, truth = _size_case()
    probs = torch.from_numpy(pred).float().reshape(1, 1, 20, 30)
    target = torch.from_numpy(truth).float().reshape(1, 1, 20, 30)
    report = LesionMetricsReport(["EX"], flat=False)
    report.update((probs, target))
    report.update((torch.zeros_like(probs), target))
    res = report.compute()["lesions"]["EX"]["size_recall"]
    assert res["25-100"] == {"recall": 0.25, "detected": 1, "total": 4}
    assert res["100-400"]["recall"] is None
