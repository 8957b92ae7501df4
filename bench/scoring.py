"""Scoring a network at the photographs' own size through a bundle's evaluation pipeline; exudate metrics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from monai_exudate.inference import load_network_weights, package_settings
from monai_exudate.metrics import LesionMetricsReport
from monai_exudate.metrics.calibration import (
    LOGIT_BINS,
    calibrated_level_histograms,
    fit_isotonic,
    logit_bin_centres,
    logit_histograms,
)
from monai_exudate.metrics.pixel import (
    aupr_from_histograms,
    average_precision_from_histograms,
    binarize,
    counts_at_threshold,
    f_maximising_threshold,
    pixel_histograms,
    pixel_scores,
)
from monai_exudate.metrics.size_recall import batch_size_counts, recall_by_size

SIZE_BINS = (0, 25, 100, 400, 1600, math.inf)


def shipped_network(
    ckpt_dir: Path, device: torch.device, bundle: str = "exudate_dsm", build: Callable | None = None
) -> torch.nn.Module:
    """The packaged network with its weights (the bundle's inference path); ``build``: the bundle's network factory
    (default: ``exudate_dsm``'s)."""
    from monai_exudate.recipes import exudate_dsm

    settings = package_settings(str(ckpt_dir / "model.pt"), bundle)
    network = (build or exudate_dsm.network)(settings)
    return load_network_weights(network, str(ckpt_dir / "model.pt"), map_location="cpu").to(device)


def inverted_predictions(
    network: torch.nn.Module, parser: ConfigParser, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(probabilities, label)`` ``[1, C, W, H]`` (MONAI's spatial order) of each ``validate#dataset`` photograph at
    its own size: the evaluation preprocessing, ``validate#inferer`` (``network`` returns logits) and
    ``validate#postprocessing``."""
    dataset = parser.get_parsed_content("validate#dataset")
    inferer = parser.get_parsed_content("validate#inferer")
    invert = parser.get_parsed_content("validate#postprocessing")
    network.eval()
    for item in dataset:
        with torch.no_grad():
            item["pred"] = inferer(item["image"][None].to(device), network)[0].cpu()
        item = invert(item)
        probs = torch.as_tensor(item["pred"])[None].float().clamp(0, 1)
        label = torch.as_tensor(item["label"])[None].float()
        if probs.shape != label.shape:
            raise ValueError(f"inverted prediction {tuple(probs.shape)} does not match the label {tuple(label.shape)}")
        yield probs, label


def score_network(
    network: torch.nn.Module,
    parser: ConfigParser,
    device: torch.device,
    threshold: float | None = None,
    calibration: tuple[list[float], list[float]] | None = None,
) -> dict[str, float]:
    """Project metrics at 0.5 on the ``validate`` split at the photographs' own size (``parser``: with evaluate.json).

    Each photograph goes through the evaluation preprocessing, the profile's inferer (``network`` returns logits) and
    the evaluation post-processing (``validate#postprocessing``: branch fusion, sigmoid, inversion of the
    preprocessing); labels are the original masks. ``best_thr``: the F-maximising level of these maps (the rule of the
    bundle's ``threshold.json``); given ``threshold`` (one chosen on other photographs), IoU, F and the recall of
    components under 100 pixels at it too (``*_thr``). ``ap_float``: the average precision of the maps' logits in
    0.01-wide bins, the ranking before the 8-bit quantisation of the written maps; given ``calibration`` (isotonic
    knots fitted on other photographs, :func:`validation_calibration`), the 11-threshold AUPR and the AP of the
    8-bit maps that calibration gives (``aupr_cal``, ``ap_cal``). ``logit_histogram``: the ``(2, bins)`` counts
    (row 0: exudate) those come from, for :func:`validation_calibration`.
    """
    report = LesionMetricsReport(["EX"], sigmas=(0.5,), size_bins=SIZE_BINS, flat=False)
    histograms = torch.zeros(1, 2, 256, dtype=torch.int64)  # 8-bit levels of (background, exudate) pixels
    logits = torch.zeros(2, LOGIT_BINS, dtype=torch.int64)  # logit bins of (exudate, background) pixels
    small = torch.zeros(1, 2, 2, dtype=torch.int64)  # components under 100 pixels at ``threshold``: [detected, total]
    # the looser count of small-lesion recall: a component counts once the mask touches it
    touched = LesionMetricsReport(["EX"], sigmas=(0.5,), size_bins=(0, 100), hit_fraction=1e-9, flat=False)
    for probs, label in inverted_predictions(network, parser, device):
        for metric in (report, touched):
            metric.update((probs, label))
        histograms += pixel_histograms(probs, label)
        # logits of the float32 probabilities (a monotone map of the network's fused logit); probabilities that float32
        # rounds to 1 (logit above about 16.6) or to 0 tie in the end bins
        logits += logit_histograms(torch.logit(probs[0].double(), eps=1e-12), label[0])[0]
        if threshold is not None:
            small += batch_size_counts(binarize(probs, threshold), label > 0.5, (0, 100, math.inf))
    scores = report.compute()["lesions"]["EX"]
    out = {k: scores[k] for k in ("iou", "f", "aupr")}
    neg, pos = histograms[0].numpy()
    out["ap"] = average_precision_from_histograms(pos, neg)
    out["best_thr"] = f_maximising_threshold(pos, neg)[0]
    out["ap_float"] = average_precision_from_histograms(*logits.numpy())
    if calibration is not None:
        levels = calibrated_level_histograms(logits.numpy(), logit_bin_centres(), calibration)
        out["aupr_cal"] = aupr_from_histograms(*levels)
        out["ap_cal"] = average_precision_from_histograms(*levels)
    if threshold is not None:
        out.update({f"{k}_thr": v for k, v in pixel_scores(*counts_at_threshold(pos, neg, threshold)).items()})
        out["recall_lt100_thr"] = recall_by_size(small[0].numpy(), (0, 100, math.inf))["0-100"]["recall"]
    out["logit_histogram"] = logits.numpy()
    out["region_f"] = scores["region"]["0.5"]["f"]
    for label in ("0-25", "25-100", "100-400"):
        out[f"recall_{label}"] = scores["size_recall"][label]["recall"]
    # under 100 pixels: the two smallest bins together
    small_bins = [scores["size_recall"][label] for label in ("0-25", "25-100")]
    detected, total = sum(b["detected"] for b in small_bins), sum(b["total"] for b in small_bins)
    out["recall_lt100"] = detected / total if total else None
    out["touched_lt100"] = touched.compute()["lesions"]["EX"]["size_recall"]["0-100"]["recall"]
    out["lesions_lt100"] = total
    return out


def validation_calibration(logit_histogram: np.ndarray) -> tuple[list[float], list[float]]:
    """Isotonic knots fitted on one set's ``logit_histogram`` (:func:`score_network`): the fit of the bundle's
    ``calibrate`` command, so every system's test maps can be scored as the shipped model's calibrated ones are."""
    return fit_isotonic(logit_histogram[0], logit_histogram[1], logit_bin_centres())
