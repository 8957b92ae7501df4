"""Validation overlays, PR-curve files and the metrics report written by evaluator handlers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine
from PIL import Image
from torch import nn

from monai_exudate.engines import MetricsReportWriter, PRCurveHandler, ValidationOverlayHandler, overlay_errors
from monai_exudate.engines.overlays import FN_COLOUR, FP_COLOUR, TP_COLOUR
from monai_exudate.metrics import LesionMetricsReport, PixelMetric, aupr_from_histograms, pixel_histograms

# MONAI's PIL reader gives images as (C, W, H); W != H catches a transposed overlay
WIDTH, HEIGHT = 20, 12
BACKGROUND = (0, 100, 150)  # display colour of channels (prob < 1, 100, 150) with mean 0 and std 1


class FirstChannel(nn.Module):
    """A stand-in network whose probability map is the image's first channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].clone()


def make_samples(num: int = 3) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    samples = []
    for i in range(num):
        probs = torch.rand(WIDTH, HEIGHT, generator=g) * 0.999
        label = (torch.rand(WIDTH, HEIGHT, generator=g) < 0.3).float()
        image = torch.stack([probs, torch.full_like(probs, 100.0), torch.full_like(probs, 150.0)])
        meta = {"filename_or_obj": f"/data/images/img_{i}.jpg"}
        samples.append({"image": MetaTensor(image, meta=meta), "label": MetaTensor(label[None], meta=dict(meta))})
    return samples


def make_evaluator(samples, handlers) -> SupervisedEvaluator:
    return SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(samples, batch_size=2),
        network=FirstChannel(),
        key_val_metric={"val_aupr": PixelMetric("aupr", output_transform=from_engine(["pred", "label"]))},
        additional_metrics={"val_report": LesionMetricsReport(["EX"], output_transform=from_engine(["pred", "label"]))},
        val_handlers=handlers,
    )


def test_overlay_errors_colours():
    image = np.full((2, 3, 3), 7, np.uint8)
    pred = np.array([[True, True, False], [False, False, True]])
    truth = np.array([[True, False, True], [False, True, True]])
    out = overlay_errors(image, pred, truth)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert tuple(out[0, 0]) == TP_COLOUR == (255, 255, 0)  # yellow
    assert tuple(out[0, 1]) == FP_COLOUR == (255, 0, 0)  # red
    assert tuple(out[0, 2]) == FN_COLOUR == (0, 255, 0)  # green
    assert tuple(out[1, 0]) == (7, 7, 7)  # true negative: image unchanged
    assert tuple(out[1, 1]) == FN_COLOUR and tuple(out[1, 2]) == TP_COLOUR
    assert (image == 7).all()  # input not modified


def test_validation_overlays_written(tmp_path):
    samples = make_samples(3)
    handler = ValidationOverlayHandler(tmp_path, lesion_names=("EX",), num_images=2)
    make_evaluator(samples, [handler]).run()

    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["epoch_001/img_0_EX.png", "epoch_001/img_1_EX.png"]
    for i in range(2):
        probs, label = samples[i]["image"][0].numpy(), samples[i]["label"][0].numpy()
        pred, truth = probs > 0.5, label > 0.5
        expected = np.empty((HEIGHT, WIDTH, 3), np.uint8)  # rows are image height
        expected[:] = BACKGROUND
        expected[(pred & truth).T] = TP_COLOUR
        expected[(pred & ~truth).T] = FP_COLOUR
        expected[(~pred & truth).T] = FN_COLOUR
        written = np.asarray(Image.open(tmp_path / f"epoch_001/img_{i}_EX.png").convert("RGB"))
        assert written.shape == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(written, expected)


def test_overlays_downscaled_to_max_side(tmp_path):
    handler = ValidationOverlayHandler(tmp_path, num_images=1, max_side=10)
    make_evaluator(make_samples(1), [handler]).run()
    assert Image.open(tmp_path / "epoch_001" / "img_0_EX.png").size == (10, 6)


def test_pr_curve_files_match_aupr(tmp_path):
    samples = make_samples(3)
    evaluator = make_evaluator(samples, [PRCurveHandler(tmp_path, lesion_names=("EX",))])
    evaluator.run()

    probs = torch.stack([s["image"][:1].as_tensor() for s in samples])
    labels = torch.stack([s["label"].as_tensor() for s in samples])
    hist = pixel_histograms(probs, labels)[0].numpy()
    expected_aupr = aupr_from_histograms(hist[1], hist[0])
    assert 0.0 < expected_aupr < 1.0

    report = json.loads((tmp_path / "epoch_001" / "pr_EX.json").read_text())
    assert report["aupr"] == pytest.approx(expected_aupr, abs=1e-12)
    assert report["aupr"] == pytest.approx(evaluator.state.metrics["val_aupr"], abs=1e-12)
    assert len(report["recall"]) == len(report["precision"]) == len(report["thresholds"]) == 12
    assert (report["recall"][-1], report["precision"][-1]) == (0.0, 1.0)
    assert report["thresholds"][:2] == [0.0, 0.1] and report["thresholds"][-1] is None
    assert report["recall"][0] == pytest.approx(1.0)  # threshold 0: every labelled pixel has prob > 0
    assert report["recall"] == sorted(report["recall"], reverse=True)
    with Image.open(tmp_path / "epoch_001" / "pr_EX.png") as picture:
        assert picture.format == "PNG" and picture.size == (450, 450)
        pixels = np.asarray(picture.convert("RGB"))
    # the curve (red) and the operating points at 0.5 and at the F-maximising threshold (blue) are drawn
    assert (pixels == (200, 30, 30)).all(-1).any() and (pixels == (31, 78, 156)).all(-1).any()


def test_metrics_report_has_evaluator_metrics(tmp_path):
    path = tmp_path / "reports" / "metrics.json"
    evaluator = make_evaluator(make_samples(3), [MetricsReportWriter(path)])
    evaluator.run()
    written = json.loads(path.read_text())
    metrics = evaluator.state.metrics
    assert {"val_aupr", "EX_iou", "EX_aupr", "mIoU"} <= set(written)
    assert set(written) == set(metrics)
    for key, value in metrics.items():
        assert written[key] == pytest.approx(float(value)), key


def test_metrics_report_is_strict_json(tmp_path):
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {
        "tensor": torch.tensor(0.25),
        "nan": float("nan"),
        "tensor_nan": torch.tensor(float("nan")),
        "numpy_nan": np.float64("nan"),
        "inf": torch.tensor(float("inf")),
        "nested": {"EX": {"iou": np.float32(0.5), "recall": [None, torch.tensor(1.0)]}},
    }
    path = tmp_path / "metrics.json"
    MetricsReportWriter(path)(engine)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "tensor": 0.25,
        "nan": None,
        "tensor_nan": None,
        "numpy_nan": None,
        "inf": None,
        "nested": {"EX": {"iou": 0.5, "recall": [None, 1.0]}},
    }
