"""What a model trained only on the synthetic default set marks on real photographs that are not exudates.

Usage: ``python bench/lookalikes.py --ckpt_dir bundles/exudate_dsm/models [--dataset_dir IDRIDSAMPLE] [--out FILE]``.

Runs the bundle's ``inference.json`` on every photograph of the dataset folder (default: the 8-photograph IDRiD
sample beside the repository; the default model never trains on it), at the model's stored operating threshold,
then scores its maps against the hard-exudate masks at the photographs' own size: false-positive exudate area (in
pixels, and in % of all pixels), the largest false-positive component (8-connected; its area and centre as a
fraction of width and height), the false positives within the optic disc regions (``disc_centre``), pixel AUPR, F and
IoU from the probability maps (the project's metrics), and the same at 0.5. Prints a markdown table and writes it
to ``--out`` with a JSON file of the figures beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

from monai_exudate.data.indexers import build_datalist
from monai_exudate.metrics import PixelHistograms, aupr_from_histograms, counts_at_threshold, pixel_scores

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "idrid_sample"
EIGHT = np.ones((3, 3), bool)
# the optic disc region: a circle of this fraction of the photograph's width round the disc centre (IDRiD's discs
# are about 0.1 of the width across; the circle takes in their glow)
DISC_RADIUS = 0.07


def run_inference(ckpt_dir: Path, photos: Path, out: Path) -> None:
    """The bundle's inference command, as a user runs it (probability maps and masks only)."""
    configs = REPO / "bundles" / "exudate_dsm" / "configs"
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(configs / "inference.json"), "--meta_file", str(configs / "metadata.json"),
        "--ckpt_dir", str(ckpt_dir), "--dataset_dir", str(photos), "--output_dir", str(out),
        "--formats", "['prob','mask']", "--progress", "False",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO)


def disc_centre(photo: str) -> tuple[float, float]:
    """Where the optic disc is, as fractions of width and height: the brightest blob of the blurred luminance (the
    sample has no disc masks; on its 8 photographs this finds every disc, checked by eye)."""
    with Image.open(photo) as image:
        grey = image.convert("L")
        small = np.asarray(grey.resize((grey.width // 16, grey.height // 16)), np.float32)
    y, x = np.unravel_index(np.argmax(ndi.gaussian_filter(small, 6)), small.shape)
    return x / small.shape[1], y / small.shape[0]


def score(datalist: list[dict], out: Path) -> dict:
    """False positives and pixel scores of the maps in ``out`` against the EX masks of ``datalist``."""
    histograms = PixelHistograms()  # pixel scores only: no connected components of the 12-megapixel maps
    fp_area, disc_fp, total, largest = 0, 0, 0, {"area_px": 0}
    for item in datalist:
        stem = Path(item["image"]).stem
        truth = np.asarray(Image.open(item["EX"]).convert("L")) > 0
        mask = np.asarray(Image.open(out / f"{stem}_EX_mask.png")) > 0
        levels = np.asarray(Image.open(out / f"{stem}_EX_prob.png"), dtype=np.float32)
        probs = torch.from_numpy(levels / 255.0)[None, None]
        target = torch.from_numpy(truth.astype(np.float32))[None, None]
        histograms.update((probs, target))
        false_positive = mask & ~truth
        fp_area += int(false_positive.sum())
        total += truth.size
        h, w = truth.shape
        dx, dy = disc_centre(item["image"])
        yy, xx = np.ogrid[:h, :w]
        disc_fp += int((false_positive & (np.hypot(xx - dx * w, yy - dy * h) < DISC_RADIUS * w)).sum())
        labels, n = ndi.label(false_positive, structure=EIGHT)
        if n:
            sizes = np.bincount(labels.ravel())[1:]
            biggest = int(np.argmax(sizes)) + 1
            if sizes[biggest - 1] > largest["area_px"]:
                ys, xs = np.nonzero(labels == biggest)
                largest = {
                    "area_px": int(sizes[biggest - 1]),
                    "image": stem,
                    "centre_x": round(float(xs.mean()) / w, 3),
                    "centre_y": round(float(ys.mean()) / h, 3),
                }
    hist = histograms.compute()[0].numpy()
    scores = pixel_scores(*counts_at_threshold(hist[1], hist[0], 0.5))
    scores["aupr"] = aupr_from_histograms(hist[1], hist[0])
    return {
        "photographs": len(datalist),
        "fp_area_px": fp_area,
        "fp_area_pct": round(100.0 * fp_area / total, 4),
        "fp_in_disc_px": disc_fp,
        "largest_fp": largest,
        "aupr": round(float(scores["aupr"]), 4),
        "f_at_0.5": round(float(scores["f"]), 4),
        "iou_at_0.5": round(float(scores["iou"]), 4),
    }


def markdown(label: str, figures: dict) -> str:
    big = figures["largest_fp"]
    where = f"{big.get('image')} at ({big.get('centre_x')}, {big.get('centre_y')})" if big["area_px"] else "-"
    return (
        "| model | FP exudate px (% of pixels) | FP px in the optic disc regions | largest FP component px | where "
        "| AUPR | F at 0.5 | IoU at 0.5 |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {label} | {figures['fp_area_px']} ({figures['fp_area_pct']}) | {figures['fp_in_disc_px']} | "
        f"{big['area_px']} | {where} | "
        f"{figures['aupr']} | {figures['f_at_0.5']} | {figures['iou_at_0.5']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt_dir", type=Path, required=True)
    parser.add_argument("--dataset_dir", type=Path, default=SAMPLE)
    parser.add_argument("--label", default="default model")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not (args.dataset_dir / "A. Segmentation").is_dir():
        raise SystemExit(f"no IDRiD-layout dataset at {args.dataset_dir}")
    datalist = build_datalist("idrid", str(args.dataset_dir))
    root = args.dataset_dir.resolve()
    items = [
        {key: str(root / d[key]) for key in ("image", "EX")}
        for section in ("training", "testing")
        for d in datalist.get(section, [])
        if d.get("EX")
    ]
    with tempfile.TemporaryDirectory(prefix="lookalikes_") as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for item in items:  # one flat folder of the photographs, linked
            (photos / Path(item["image"]).name).symlink_to(Path(item["image"]).resolve())
        out = Path(tmp) / "out"
        run_inference(args.ckpt_dir, photos, out)
        figures = score(items, out)
    table = markdown(args.label, figures)
    print(table)
    if args.out is not None:
        args.out.write_text(table + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
