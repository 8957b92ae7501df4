"""Tests for the Ignite metric wrappers on plain Ignite engines fed decollated MONAI-style outputs."""

import json

import ignite.distributed as idist
import pytest
import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from monai.handlers import from_engine

from monai_exudate.metrics import LesionMetricsReport, PixelHistograms, PixelMetric, RegionFMetric
from monai_exudate.metrics.pixel import (
    absolute_error_sums,
    binarize,
    pixel_histograms,
    resolve_missing_masks,
    scores_from_accumulators,
)
from monai_exudate.metrics.region import batch_region_counts, region_scores


def _samples(n=4, c=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        label = (torch.rand(c, size, size, generator=g) < 0.15).float()
        pred = (0.5 * label + 0.6 * torch.rand(c, size, size, generator=g)).clamp(0, 1)
        out.append({"pred": pred, "label": label})
    return out


def _batches(samples, batch=2):
    return [samples[i : i + batch] for i in range(0, len(samples), batch)]


def _run(metrics, batches, process=None):
    """Engine whose output is the decollated list of per-sample dicts (as after MONAI's decollation)."""
    engine = Engine(process or (lambda e, b: b))
    for name, metric in metrics.items():
        metric.attach(engine, name)
    engine.run(batches, max_epochs=1)
    return engine.state.metrics


def _scores(probs, target, present=None, missing_masks="negative"):
    """Per-channel pixel scores straight from the pure functions, the reference the metrics must reproduce."""
    target, include = resolve_missing_masks(target, present, missing_masks)
    abs_sum, pixels = absolute_error_sums(probs, target, include)
    return scores_from_accumulators(pixel_histograms(probs, target, include), abs_sum, pixels, 0.5)


def _reference(samples, present=None, missing_masks="negative"):
    probs, target = torch.stack([s["pred"] for s in samples]), torch.stack([s["label"] for s in samples])
    return _scores(probs, target, present, missing_masks)


def test_pixel_metric_lists_and_batched_tensors_agree():
    samples = _samples()
    ref = _reference(samples)
    names = ("iou", "sn", "ppv", "f", "aupr", "mae")
    metrics = {n: PixelMetric(n, output_transform=from_engine(["pred", "label"])) for n in names}
    metrics["ex_iou"] = PixelMetric("iou", channel=0)
    got = _run(metrics, _batches(samples))
    for n in names:
        assert isinstance(got[n], float)
        assert got[n] == pytest.approx((ref[0][n] + ref[1][n]) / 2)
    assert got["ex_iou"] == pytest.approx(ref[0]["iou"])
    # batched tensors in a dict (no decollation) give the same numbers
    collated = [{k: torch.stack([s[k] for s in b]) for k in ("pred", "label")} for b in _batches(samples)]
    got_batched = _run({n: PixelMetric(n) for n in names}, collated)
    for n in names:
        assert got_batched[n] == pytest.approx(got[n])
    # so do (pred, label) tuples of batched tensors, as a plain Ignite engine would output
    tuples = [(b["pred"], b["label"]) for b in collated]
    assert _run({"f": PixelMetric("f")}, tuples)["f"] == pytest.approx(got["f"])


def test_samples_of_different_sizes():
    small, large = _samples(1, size=8), _samples(1, size=12, seed=1)
    got = _run({"iou": PixelMetric("iou", channel=1)}, [[small[0], large[0]]])
    histograms = PixelHistograms()
    histograms.update(([small[0]["pred"], large[0]["pred"]], [small[0]["label"], large[0]["label"]]))
    expected = pixel_histograms(small[0]["pred"][None], small[0]["label"][None])
    expected += pixel_histograms(large[0]["pred"][None], large[0]["label"][None])
    hist = histograms.compute()
    assert torch.equal(hist, expected)
    # channel 1 at 0.5: levels 128-255 are predicted positive (q / 255 > 0.5)
    tp, fp, fn = int(hist[1, 1, 128:].sum()), int(hist[1, 0, 128:].sum()), int(hist[1, 1, :128].sum())
    assert got["iou"] == pytest.approx(tp / (tp + fp + fn))


def test_region_f_metric():
    samples = _samples()
    probs, target = torch.stack([s["pred"] for s in samples]), torch.stack([s["label"] for s in samples])
    counts = batch_region_counts(binarize(probs), target > 0.5, (0.35,), None)
    ref = [region_scores(c, (0.35,))[0.35]["f"] for c in counts.numpy()]
    got = _run({"rf": RegionFMetric(0.35), "rf1": RegionFMetric(0.35, channel=1)}, _batches(samples))
    assert got["rf"] == pytest.approx(sum(ref) / 2)
    assert got["rf1"] == pytest.approx(ref[1])


def test_report_flat_keys_spread_into_state():
    samples = _samples()
    ref = _reference(samples)
    got = _run({"report": LesionMetricsReport(["EX", "HE"])}, _batches(samples))
    assert "report" not in got
    assert got["EX_iou"] == pytest.approx(ref[0]["iou"])
    assert got["HE_aupr"] == pytest.approx(ref[1]["aupr"])
    assert got["mIoU"] == pytest.approx((ref[0]["iou"] + ref[1]["iou"]) / 2)
    assert got["mAUPR"] == pytest.approx((ref[0]["aupr"] + ref[1]["aupr"]) / 2)
    for key in ("EX_f_sigma0.2", "HE_f_sigma0.8", "mF_sigma0.5", "EX_recall_size0-25", "mMAE"):
        assert isinstance(got[key], float)
    # size bins without lesions are left out of the flat dict
    assert "EX_recall_size1600-inf" not in got


def test_report_nested_is_json_safe():
    samples = _samples()
    got = _run({"report": LesionMetricsReport(["EX", "HE"], flat=False)}, _batches(samples))
    report = got["report"]
    assert "EX_iou" not in got
    assert report["lesions"]["EX"]["size_recall"]["1600-inf"]["recall"] is None
    assert set(report["lesions"]["HE"]["region"]) == {"0.2", "0.35", "0.5", "0.65", "0.8"}
    assert report["mean"]["mIoU"] == pytest.approx(
        (report["lesions"]["EX"]["iou"] + report["lesions"]["HE"]["iou"]) / 2
    )
    json.loads(json.dumps(report))


def _missing_mask_batches():
    # one channel (SE); the second image has no SE file and a confident false detection
    label = torch.zeros(1, 8, 8)
    label[0, 2:4, 2:4] = 1
    pred_a = label * 0.9
    pred_b = torch.zeros(1, 8, 8)
    pred_b[0, 5:7, 5:7] = 0.9
    return [
        {"pred": pred_a, "label": label, "present": torch.tensor([True])},
        {"pred": pred_b, "label": torch.zeros(1, 8, 8), "present": torch.tensor([False])},
    ]


@pytest.mark.parametrize("rule, expected_ppv", [("negative", 0.5), ("ignore", 1.0)])
def test_missing_masks_from_present_key(rule, expected_ppv):
    batch = _missing_mask_batches()
    metrics = {
        "ppv": PixelMetric("ppv", missing_masks=rule, present_key="present"),
        "rf": RegionFMetric(0.5, missing_masks=rule, present_key="present"),
        "report": LesionMetricsReport(["SE"], missing_masks=rule, present_key="present"),
    }
    got = _run(metrics, [batch])
    assert got["ppv"] == pytest.approx(expected_ppv)
    assert got["SE_ppv"] == pytest.approx(expected_ppv)
    assert got["rf"] == pytest.approx(2 / 3 if rule == "negative" else 1.0)


def test_present_flags_from_batch_and_from_output_transform():
    batch = _missing_mask_batches()
    plain = [{"pred": s["pred"], "label": s["label"]} for s in batch]
    flags = [{"present": s["present"]} for s in batch]

    def process(engine, b):
        # the engine output lacks the flags; they stay in engine.state.batch
        return plain

    got = _run({"ppv": PixelMetric("ppv", missing_masks="ignore", present_key="present")}, [flags], process)
    assert got["ppv"] == pytest.approx(1.0)
    triple = from_engine(["pred", "label", "present"])
    got = _run({"ppv": PixelMetric("ppv", missing_masks="ignore", output_transform=triple)}, [batch])
    assert got["ppv"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="present_key"):
        _run({"ppv": PixelMetric("ppv", present_key="absent")}, [plain])


def test_simulated_two_rank_reduction(monkeypatch):
    samples = _samples()
    metric = LesionMetricsReport(["EX", "HE"], flat=False)
    metric.update(from_engine(["pred", "label"])(samples))
    single = metric.compute()
    hist_before = metric._hist.clone()
    # two ranks holding identical counts: every reduced count doubles, every ratio stays
    monkeypatch.setattr(idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(idist, "all_reduce", lambda t, op="SUM": t * 2)
    doubled = metric.compute()
    assert doubled["lesions"]["EX"]["tp"] == 2 * single["lesions"]["EX"]["tp"]
    assert (
        doubled["lesions"]["HE"]["size_recall"]["0-25"]["total"]
        == 2 * single["lesions"]["HE"]["size_recall"]["0-25"]["total"]
    )
    assert doubled["mean"]["mIoU"] == pytest.approx(single["mean"]["mIoU"])
    assert torch.equal(metric._hist, hist_before)


def test_errors():
    with pytest.raises(NotComputableError):
        PixelMetric("iou").compute()
    with pytest.raises(ValueError, match="name"):
        PixelMetric("dice")
    with pytest.raises(ValueError, match="lesion_names"):
        LesionMetricsReport(["EX", "EX"])
    with pytest.raises(ValueError, match="probabilities"):
        PixelMetric("iou").update((torch.full((1, 1, 4, 4), 3.0), torch.zeros(1, 1, 4, 4)))
    with pytest.raises(ValueError, match="channels"):
        LesionMetricsReport(["EX"]).update((torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)))
