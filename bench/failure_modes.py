"""A picture of a model's largest mistakes: the biggest false marks and missed lesions in an inference run's masks.

Usage: ``python bench/failure_modes.py --outputs OUT --datalist DL.json --dataset_dir DIR --section testing
--out failure_modes.jpg [--lesions EX HE SE MA] [--per_lesion 2] [--tile 384]``.

For each lesion, the masks the runner wrote (``<stem>_<LESION>_mask.png``) are compared with the datalist's masks
at the photographs' own size; connected marks (8-connectivity) that touch no annotated pixel are false marks, and
annotated components with no marked pixel are misses. The ``--per_lesion`` largest of each kind, over all
photographs, become tiles of the photograph around them: the model's mask filled in the lesion's overlay colour,
the annotation outlined in white, a caption naming photograph, lesion, kind and area. The tiles show what the
model confuses (optic disc rim, vessel reflexes, field edge, unmarked bright spots) for the model card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from monai_exudate.data.checks import checked_sections
from monai_exudate.data.transforms import LoadFundusd
from monai_exudate.inference.records import read_manifest
from monai_exudate.inference.writers import LESION_COLOURS

EIGHT = np.ones((3, 3), dtype=bool)
KINDS = ("false mark", "missed")


def mistakes(predicted: np.ndarray, truth: np.ndarray) -> list[tuple[str, int, tuple[int, int]]]:
    """``(kind, area, (row, column) centre)`` of each false mark (a predicted component touching no annotated pixel)
    and each miss (an annotated component with no predicted pixel)."""
    found = []
    for kind, mask, other in zip(KINDS, (predicted, truth), (truth, predicted)):
        labels, n = ndimage.label(mask, structure=EIGHT)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        areas = ndimage.sum_labels(mask, labels, index)
        overlap = ndimage.sum_labels(other, labels, index)
        centres = ndimage.center_of_mass(mask, labels, index)
        for area, hit, centre in zip(areas, overlap, centres):
            if hit == 0:
                found.append((kind, int(area), (int(centre[0]), int(centre[1]))))
    return found


def tile(photo: np.ndarray, predicted: np.ndarray, truth: np.ndarray, centre: tuple[int, int], size: int,
         colour: tuple[int, int, int], caption: str) -> Image.Image:  # fmt: skip
    """The ``size`` square of the photograph around ``centre``: mask filled in ``colour`` at half opacity,
    annotation outlined in white, ``caption`` on a dark band."""
    h, w = predicted.shape
    top = min(max(centre[0] - size // 2, 0), max(h - size, 0))
    left = min(max(centre[1] - size // 2, 0), max(w - size, 0))
    window = np.s_[top : top + size, left : left + size]
    rgb = photo[window].astype(np.float32)
    marked = predicted[window]
    rgb[marked] = 0.5 * rgb[marked] + 0.5 * np.asarray(colour, dtype=np.float32)
    annotated = truth[window]
    outline = annotated & ~ndimage.binary_erosion(annotated, structure=EIGHT, iterations=2)
    rgb[outline] = 255.0
    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, image.width, 14], fill=(0, 0, 0))
    draw.text((3, 2), caption, fill=(255, 255, 255))
    return image


def failure_picture(outputs: Path, items: list[dict], lesions: list[str], per_lesion: int, size: int) -> Image.Image:
    """Tiles of the ``per_lesion`` largest false marks and misses of each lesion, one row per lesion.

    Each photograph is read once and let go: the tiles of its own ``per_lesion`` largest mistakes of each kind are
    cut then (the largest over all photographs are among them), so memory holds tiles, not photographs."""
    load = LoadFundusd(lesions=lesions)
    candidates: dict[tuple[str, str], list[tuple[int, Image.Image]]] = {}
    for item in items:
        stem = Path(item["image"]).stem
        loaded = load(dict(item))
        photo = np.asarray(loaded["image"]).transpose(2, 1, 0)  # (H, W, 3) uint8
        truth = np.asarray(loaded["label"]).transpose(0, 2, 1) > 0
        for c, lesion in enumerate(lesions):
            path = outputs / f"{stem}_{lesion}_mask.png"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no mask for {stem} (did the run segment it?)")
            predicted = np.asarray(Image.open(path)) > 0
            if predicted.shape != truth[c].shape:
                raise ValueError(f"{path}: mask of shape {predicted.shape}, annotation of {truth[c].shape}")
            found = mistakes(predicted, truth[c])
            colour = LESION_COLOURS.get(lesion, (255, 0, 255))
            for kind in KINDS:
                largest = sorted((m for m in found if m[0] == kind), key=lambda m: -m[1])[:per_lesion]
                candidates.setdefault((lesion, kind), []).extend(
                    (area, tile(photo, predicted, truth[c], centre, size, colour, f"{stem} {lesion} {kind}, {area} px"))
                    for _, area, centre in largest
                )
    rows = []
    for lesion in lesions:
        tiles = []
        for kind in KINDS:
            ranked = sorted(candidates.get((lesion, kind), []), key=lambda candidate: -candidate[0])
            tiles += [image for _, image in ranked[:per_lesion]]
        if tiles:
            rows.append(tiles)
    if not rows:
        raise ValueError("no false mark and no missed lesion in these outputs: nothing to show")
    width = max(len(r) for r in rows) * (size + 4)
    canvas = Image.new("RGB", (width, len(rows) * (size + 4)), (255, 255, 255))
    for r, tiles in enumerate(rows):
        for k, image in enumerate(tiles):
            canvas.paste(image, (k * (size + 4), r * (size + 4)))
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=Path, required=True, help="the inference run's output folder")
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--dataset_dir", type=Path, required=True)
    parser.add_argument("--section", default="testing")
    parser.add_argument("--lesions", nargs="+", default=None, help="default: the run's (manifest.json)")
    parser.add_argument("--per_lesion", type=int, default=2, help="largest false marks and misses per lesion")
    parser.add_argument("--tile", type=int, default=384, help="tile side in pixels of the photograph")
    parser.add_argument("--out", type=Path, required=True, help="the picture (JPEG or PNG)")
    args = parser.parse_args(argv)
    lesions = args.lesions
    if lesions is None:
        manifest = read_manifest(args.outputs / "manifest.json")  # ValueError naming the file when damaged
        if manifest is None or "lesions" not in manifest["settings"]:
            parser.error(f"{args.outputs / 'manifest.json'} does not name the run's lesions: give --lesions")
        lesions = list(manifest["settings"]["lesions"])
    # checked_sections reads the datalist file itself, naming it in every error
    items = checked_sections(str(args.datalist), [args.section], str(args.dataset_dir), lesions)[args.section]
    picture = failure_picture(args.outputs, items, lesions, args.per_lesion, args.tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, quality=90)
    print(f"{args.out}: {picture.width}x{picture.height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
