"""Score the maps an inference run wrote (``<stem>_<LESION>_prob.png``) against a datalist section's masks.

Usage: ``python bench/score_outputs.py --outputs OUT --datalist DL.json --dataset_dir DIR --section testing
[--lesions EX HE SE MA] [--json FILE]``.

This scores exactly what a user receives: the 8-bit probability PNGs at each photograph's own size, read back from
disk, and the masks the runner wrote. Per lesion: the authors' 11-threshold AUPR, average precision over all 256
levels (AP; it does not interpolate between distant operating points, so it does not flatter weak maps), IoU and F
at 0.5 and at the threshold the run used (``manifest.json``), and recall of lesion components under 100 pixels
(counted when half their pixels are marked). A missing mask counts as no lesion (IDRiD's convention for SE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from monai_exudate.data.checks import checked_sections
from monai_exudate.data.transforms import LoadFundusd
from monai_exudate.metrics import LesionMetricsReport
from monai_exudate.metrics.pixel import (
    aupr_from_histograms,
    average_precision_from_histograms,
    counts_at_threshold,
    pixel_scores,
)

SIZE_BINS = (0, 100, float("inf"))


def score_folder(outputs: Path, items: list[dict], lesions: list[str], thresholds: list[float]) -> dict[str, dict]:
    """Per-lesion scores of the PNG maps in ``outputs`` against the masks of ``items`` (each lesion's masks at its
    own threshold); every photograph and mask is read once."""
    load = LoadFundusd(lesions=lesions)
    hist = np.zeros((len(lesions), 2, 256), dtype=np.int64)
    small = [LesionMetricsReport([lesion], sigmas=(0.5,), size_bins=SIZE_BINS, threshold=t, flat=False)
             for lesion, t in zip(lesions, thresholds)]  # fmt: skip
    for item in items:
        stem = Path(item["image"]).stem
        label = torch.as_tensor(load(dict(item))["label"]).transpose(1, 2).numpy() > 0  # (C, H, W)
        levels = []
        for c, lesion in enumerate(lesions):
            path = outputs / f"{stem}_{lesion}_prob.png"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no map for {stem} (did the run segment it?)")
            q = np.asarray(Image.open(path))
            if q.shape != label[c].shape:
                raise ValueError(f"{path}: map of shape {q.shape}, mask of {label[c].shape}")
            hist[c, 0] += np.bincount(q[label[c]], minlength=256)
            hist[c, 1] += np.bincount(q[~label[c]], minlength=256)
            levels.append(q)
        probs = torch.from_numpy(np.stack(levels)).float().div(255.0)[None]
        truth = torch.from_numpy(label).float()[None]
        for c, report in enumerate(small):
            report.update((probs[:, c : c + 1], truth[:, c : c + 1]))
    regions = {lesion: report.compute()["lesions"][lesion] for lesion, report in zip(lesions, small)}
    out = {}
    for c, lesion in enumerate(lesions):
        pos, neg = hist[c]
        half = pixel_scores(*counts_at_threshold(pos, neg, 0.5))
        at = pixel_scores(*counts_at_threshold(pos, neg, thresholds[c]))
        out[lesion] = {
            "aupr": aupr_from_histograms(pos, neg),
            "ap": average_precision_from_histograms(pos, neg),
            "iou": half["iou"],
            "f": half["f"],
            "threshold": thresholds[c],
            "iou_at_threshold": at["iou"],
            "f_at_threshold": at["f"],
            "recall_lt100": regions[lesion]["size_recall"]["0-100"]["recall"],
            "lesion_pixels": int(pos.sum()),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", required=True, type=Path, help="the inference run's output folder")
    parser.add_argument("--datalist", required=True, help="datalist JSON with the masks")
    parser.add_argument("--dataset_dir", required=True, help="folder the datalist's paths are relative to")
    parser.add_argument("--section", default="testing")
    parser.add_argument("--lesions", nargs="+", default=None, help="default: the run's lesions (manifest.json)")
    parser.add_argument("--json", default=None, help="also write the scores here")
    args = parser.parse_args(argv)
    manifest = json.loads((args.outputs / "manifest.json").read_text())
    settings = manifest.get("settings", manifest)
    lesions = args.lesions or list(settings.get("lesion_names") or settings.get("lesions") or ["EX"])
    threshold = settings.get("threshold", 0.5)
    items = checked_sections(args.datalist, [args.section], args.dataset_dir, lesions)[args.section]
    thresholds = [float(t) for t in threshold] if isinstance(threshold, list) else [float(threshold)] * len(lesions)
    scores = score_folder(args.outputs, items, lesions, thresholds)
    print(f"{len(items)} photographs of {args.section}, maps from {args.outputs}")
    print("lesion  AUPR   AP     IoU@0.5 F@0.5  thr    IoU@t  F@t    recall<100px")
    for lesion, s in scores.items():
        recall = "-" if s["recall_lt100"] is None else f"{s['recall_lt100']:.3f}"
        print(f"{lesion:<7} {s['aupr']:.4f} {s['ap']:.4f} {s['iou']:.4f}  {s['f']:.4f} {s['threshold']:.3f}  "
              f"{s['iou_at_threshold']:.4f} {s['f_at_threshold']:.4f} {recall}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"section": args.section, "images": len(items), "lesions": scores},
                                              indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
