"""Fit a model's calibration on a held-out datalist section and ship it in the model package, or score it on another."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from PIL import Image

from monai_exudate.data.checks import checked_sections
from monai_exudate.data.transforms import LoadFundusd
from monai_exudate.inference.calibration import CALIBRATION_KEY, package_calibration
from monai_exudate.inference.inversion import invert_prediction
from monai_exudate.inference.model_package import read_model_package
from monai_exudate.inference.postprocessing import check_logit_batch
from monai_exudate.metrics.calibration import (
    calibrated_level_histograms,
    expected_calibration_error,
    fit_isotonic,
    logit_bin_centres,
    logit_histograms,
    reliability_bins,
)
from monai_exudate.metrics.pixel import (
    aupr_from_histograms,
    average_precision_from_histograms,
    counts_at_threshold,
    f_maximising_threshold,
    pixel_scores,
)
from monai_exudate.utils.atomic import atomic_save_image, atomic_write_json
from monai_exudate.utils.hashing import file_sha256

__all__ = ["CONFIG_IDS", "calibrate_model", "draw_reliability_diagram", "section_logit_histograms"]

logger = logging.getLogger(__name__)
_PAD_SHIFT = 100.0

# what the bundle's inference config must define: the calibration is fitted on the logits its chain makes
CONFIG_IDS = ("network", "preprocessing", "logit_postprocessing", "inferer", "lesions", "ckpt_path", "threshold_file")


def _inference_parts(config_file: str | os.PathLike, overrides: Mapping[str, Any]) -> dict[str, Any]:
    parser = ConfigParser()
    parser.read_config(str(config_file))
    meta = Path(config_file).with_name("metadata.json")
    if meta.is_file():
        parser.read_meta(str(meta))
    parser.update(dict(overrides))
    missing = [i for i in CONFIG_IDS if i not in parser]
    if missing:
        raise ValueError(f"{config_file}: not a bundle inference config with a logit chain; it lacks {missing}")
    parts = {i: parser.get_parsed_content(i) for i in CONFIG_IDS}
    parts["device"] = parser.get_parsed_content("device") if "device" in parser else torch.device("cpu")
    settings = parser.get_parsed_content("threshold_map_settings") if "threshold_map_settings" in parser else {}
    parts["threshold_map_settings"] = {k: v for k, v in dict(settings).items() if k != "calibrated"}
    return parts


def section_logit_histograms(
    network: torch.nn.Module,
    preprocessing: Callable,
    logit_postprocessing: Callable,
    inferer: Callable,
    items: Sequence[Mapping[str, Any]],
    lesion_names: Sequence[str],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logit histograms ``(C, 2, bins)`` of a section's photographs against their masks, on each photograph's grid.

    The logits are the bundle's inference chain before its activation (preprocessing, inferer, branch fusion),
    mapped back to the photograph's size as its maps are; a missing mask counts as no lesion (IDRiD's convention).
    """
    load_masks = LoadFundusd(lesions=lesion_names)
    network = network.to(device).eval()
    total: torch.Tensor | None = None
    for number, item in enumerate(items, 1):
        image = preprocessing({"image": item["image"]})["image"]
        with torch.no_grad():
            logits = check_logit_batch(inferer(image.as_tensor()[None].to(device), network), image[None])
            fused = torch.as_tensor(logit_postprocessing({"pred": logits[0]})["pred"])
            # shifted so that what the inversion pads (outside a field-of-view crop) reads as a certain background
            # logit, as it reads as probability 0 in the written maps; resizing commutes with the shift
            fused = invert_prediction(preprocessing, fused + _PAD_SHIFT, image).float().cpu() - _PAD_SHIFT
        label = torch.as_tensor(load_masks(dict(item))["label"])
        if tuple(label.shape) != tuple(fused.shape):
            raise ValueError(f"{item['image']}: masks of shape {tuple(label.shape)}, maps of {tuple(fused.shape)}")
        hist = logit_histograms(fused, label)
        total = hist if total is None else total + hist
        logger.info("calibration: %d/%d %s", number, len(items), Path(str(item["image"])).name)
    if total is None:
        raise ValueError("the datalist section holds no photograph to calibrate on")
    return total


def _scores(level_hist: np.ndarray, threshold: float) -> dict[str, Any]:
    """The figures of one 8-bit map's level histograms ``(2, 256)``: AUPR, AP, ECE, IoU and F at 0.5 and at
    ``threshold``, and the reliability bins."""
    pos, neg = level_hist
    at_half = pixel_scores(*counts_at_threshold(pos, neg, 0.5))
    at_threshold = pixel_scores(*counts_at_threshold(pos, neg, threshold))
    return {
        "aupr": aupr_from_histograms(pos, neg),
        "ap": average_precision_from_histograms(pos, neg),
        "ece": expected_calibration_error(level_hist),
        "iou": at_half["iou"],
        "f": at_half["f"],
        "threshold": float(threshold),
        "iou_at_threshold": at_threshold["iou"],
        "f_at_threshold": at_threshold["f"],
        "reliability": reliability_bins(level_hist),
    }


def draw_reliability_diagram(rows: Mapping[str, Sequence[Mapping[str, float]]], title: str) -> Image.Image:
    """Reliability diagram: lesion frequency against mean predicted probability per bin, one line per map
    (``rows``: name -> :func:`~monai_exudate.metrics.calibration.reliability_bins`), with the diagonal."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
    for (name, bins), colour in zip(rows.items(), ("#c81e1e", "#1f4e9c", "#2e7d32", "#6a1b9a")):
        axes.plot([b["confidence"] for b in bins], [b["frequency"] for b in bins], "-o", color=colour,
                  markersize=3, linewidth=1.5, label=name)  # fmt: skip
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability", ylabel="lesion frequency", title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.canvas.draw()
    return Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())


def calibrate_model(
    config_file: str | os.PathLike,
    datalist: str | os.PathLike | Mapping[str, Any],
    dataset_dir: str | os.PathLike,
    section: str,
    overrides: Mapping[str, Any] | None = None,
    fit: bool = True,
    report_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Fit (``fit=True``) or score the calibration of the model a bundle's ``inference.json`` runs.

    Fitting: the isotonic calibration of each lesion's fused logit on ``section`` (a held-out part of the training
    data, never the test photographs) is written into the model package (``calibration``, with the section, its
    image ids and figures), and the operating threshold file is rewritten with each lesion's F-maximising level of
    the calibrated 8-bit maps on the same section (``map_settings.calibrated`` true). Scoring (``fit=False``): the
    package's calibration is only measured on ``section`` (e.g. the test photographs). Both return, per lesion, the
    11-threshold AUPR, the average precision, the expected calibration error and the scores at the threshold of the
    uncalibrated (sigmoid) and calibrated 8-bit maps; ``report_dir`` receives ``calibration_<section>.json`` and one
    reliability diagram per lesion.
    """
    parts = _inference_parts(config_file, overrides or {})
    lesions = list(parts["lesions"])
    ckpt_path = Path(parts["ckpt_path"])
    package = read_model_package(ckpt_path)
    if package is None:
        raise ValueError(f"no model package beside {ckpt_path}: calibrate a model trained by the bundle")
    current = package_calibration(ckpt_path)
    if not fit and current is None:
        raise ValueError(f"the model package beside {ckpt_path} holds no calibration to score; fit one first")
    items = checked_sections(datalist, [section], dataset_dir, lesions)[section]
    hist = section_logit_histograms(
        parts["network"], parts["preprocessing"], parts["logit_postprocessing"], parts["inferer"], items, lesions,
        parts["device"],
    )  # fmt: skip
    centres = logit_bin_centres()
    if fit:
        knots = {}
        for c, lesion in enumerate(lesions):
            if int(hist[c, 0].sum()) == 0:
                logger.warning("no %s pixel in section %r: %s keeps the sigmoid (no calibration)", lesion, section,
                               lesion)  # fmt: skip
                continue
            knots[lesion] = fit_isotonic(hist[c, 0], hist[c, 1], centres)
        if not knots:
            raise ValueError(f"section {section!r} of {datalist} holds no lesion pixel of {lesions}: nothing to fit")
    else:
        stored = current["lesions"]
        knots = {les: (stored[les]["logits"], stored[les]["probabilities"]) for les in lesions if les in stored}
    threshold_file = parts["threshold_file"]
    record = _threshold_record(threshold_file) if threshold_file else {}
    calibrated_record = bool((record.get("map_settings") or {}).get("calibrated"))
    if not fit and threshold_file and record and not calibrated_record:
        logger.warning("%s holds a threshold chosen on uncalibrated maps: the calibrated figures use it as it is",
                       threshold_file)  # fmt: skip
    # the sigmoid map's thresholds: the file's own before a fit, kept beside the calibrated ones after it
    sigmoid_thresholds = record.get("sigmoid_thresholds", {}) if calibrated_record else record.get("thresholds", {})
    thresholds = record.get("thresholds", {})
    report: dict[str, Any] = {"section": section, "images": [str(i.get("id", i["image"])) for i in items],
                              "lesions": {}}  # fmt: skip
    new_thresholds = {}
    for c, lesion in enumerate(lesions):
        raw = calibrated_level_histograms(hist[c], centres, None)
        cal = calibrated_level_histograms(hist[c], centres, knots.get(lesion))
        raw_threshold = float(sigmoid_thresholds.get(lesion, 0.5))
        if threshold_file is None:  # a bundle without a threshold file masks at 0.5
            cal_threshold = 0.5
        elif fit:
            cal_threshold = f_maximising_threshold(cal[0], cal[1])[0]
        else:
            cal_threshold = float(thresholds.get(lesion, 0.5))
        new_thresholds[lesion] = cal_threshold
        report["lesions"][lesion] = {
            "pixels": {"lesion": int(hist[c, 0].sum()), "background": int(hist[c, 1].sum())},
            # the ranking of the float maps (0.01-wide logit bins), which any monotone calibration keeps
            "float_ap": average_precision_from_histograms(hist[c, 0].numpy(), hist[c, 1].numpy()),
            "sigmoid": _scores(raw, raw_threshold),
            "calibrated": _scores(cal, cal_threshold),
        }
    if report_dir is not None:
        _write_report(report, Path(report_dir), section)
    if fit:
        _ship(ckpt_path, package, knots, report, section, datalist)
        if threshold_file:
            _rewrite_thresholds(Path(threshold_file), record, new_thresholds, sigmoid_thresholds,
                                parts["threshold_map_settings"])  # fmt: skip
    return report


def _threshold_record(path: str | os.PathLike) -> dict[str, Any]:
    """The threshold file's record, checked; ``{}`` when there is none. A file that is not a threshold record raises
    ``ValueError`` naming it (it is never overwritten)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("thresholds"), dict):
            raise ValueError("no 'thresholds' object")
        for value in record["thresholds"].values():
            float(value)
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"threshold file {path} is not valid ({err}): fix or move it, nothing was written") from err
    return record


def _write_report(report: Mapping[str, Any], folder: Path, section: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(dict(report), folder / f"calibration_{section}.json")
    for lesion, figures in report["lesions"].items():
        rows = {
            f"sigmoid (ECE {figures['sigmoid']['ece']:.4f})": figures["sigmoid"]["reliability"],
            f"calibrated (ECE {figures['calibrated']['ece']:.4f})": figures["calibrated"]["reliability"],
        }
        image = draw_reliability_diagram(rows, f"{lesion}, {section} ({len(report['images'])} photographs)")
        atomic_save_image(image, folder / f"reliability_{lesion}_{section}.png")


def _ship(
    ckpt_path: Path,
    package: Mapping[str, Any],
    knots: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    report: Mapping[str, Any],
    section: str,
    datalist: str | os.PathLike | Mapping[str, Any],
) -> None:
    """Write the calibration into the model package beside ``ckpt_path`` (every other entry kept)."""
    fitted_on = {
        "section": section,
        "datalist": str(datalist) if not isinstance(datalist, Mapping) else "in memory",
        "image_ids": list(report["images"]),
        "weights_sha256": file_sha256(ckpt_path),
    }
    figures = {
        lesion: {name: {k: v for k, v in scores.items() if k != "reliability"} for name, scores in f.items()
                 if name in ("sigmoid", "calibrated")}
        for lesion, f in report["lesions"].items()
    }  # fmt: skip
    entry = {
        "method": "isotonic regression of the fused logit (pool-adjacent-violators), piecewise linear",
        "fitted_on": fitted_on,
        "validation_figures": figures,
        "lesions": {les: {"logits": [float(v) for v in x], "probabilities": [float(v) for v in y]}
                    for les, (x, y) in knots.items()},  # fmt: skip
    }
    atomic_write_json({**dict(package), CALIBRATION_KEY: entry}, ckpt_path.with_name("model_package.json"))
    logger.info("calibration of %s written into %s", list(knots), ckpt_path.with_name("model_package.json"))


def _rewrite_thresholds(
    path: Path,
    record: Mapping[str, Any],
    thresholds: Mapping[str, float],
    sigmoid_thresholds: Mapping[str, float],
    map_settings: Mapping[str, Any],
) -> None:
    """The threshold file with each lesion's level chosen on the calibrated maps; the uncalibrated map's levels are
    kept as ``sigmoid_thresholds`` (a later fit starts from them) and every other entry is kept."""
    out = dict(record)
    out["thresholds"] = {k: float(v) for k, v in thresholds.items()}
    out["sigmoid_thresholds"] = {k: float(v) for k, v in sigmoid_thresholds.items()}
    out["rule"] = "F-maximising level of the calibrated maps on the calibration section"
    out["map_settings"] = {**dict(map_settings), **dict(record.get("map_settings") or {}), "calibrated": True}
    atomic_write_json(out, path)
