"""Ignite handler that draws the set-wide precision-recall curve of each lesion after validation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events
from PIL import Image, ImageDraw

from monai_exudate.data.atomic import atomic_save_image, atomic_write_json
from monai_exudate.engines.utils import update_pixel_counts
from monai_exudate.metrics.pixel import AUPR_THRESHOLDS, PixelCounts, precision_recall_points, trapezoid_auc


def draw_pr_curve(recall: np.ndarray, precision: np.ndarray, title: str, size: int = 400) -> Image.Image:
    """Render a precision-recall curve (points in threshold order) as a small RGB picture."""
    margin = 40
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    span = size - 2 * margin

    def xy(r: float, p: float) -> tuple[float, float]:
        return margin + r * span, size - margin - p * span

    draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    for tick in (0.0, 0.5, 1.0):
        draw.text((xy(tick, 0)[0] - 8, size - margin + 6), f"{tick:.1f}", fill="black")
        draw.text((6, xy(0, tick)[1] - 6), f"{tick:.1f}", fill="black")
    draw.text((size // 2 - 20, size - 16), "recall", fill="black")
    draw.text((6, 8), f"{title}  precision", fill="black")
    points = [xy(float(r), float(p)) for r, p in zip(recall, precision)]
    draw.line(points, fill=(200, 30, 30), width=2)
    for x, y in points:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(200, 30, 30))
    return img


class PRCurveHandler:
    """Accumulate 8-bit probability histograms during validation; at its end write a PR curve PNG and JSON per lesion.

    Files: ``output_dir/epoch_NNN/pr_<lesion>.png`` and ``.json`` (thresholds, recall, precision, AUPR).
    """

    def __init__(
        self, output_dir: str | os.PathLike, lesion_names: Sequence[str] = ("EX",), missing_masks: str = "negative"
    ) -> None:
        self.output_dir = Path(output_dir)
        self.lesion_names = list(lesion_names)
        self.counts = PixelCounts(missing_masks=missing_masks)

    def attach(self, engine: Engine) -> None:
        """Register the handler on an evaluator."""
        engine.add_event_handler(Events.STARTED, lambda e: self.counts.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def update(self, engine: Engine) -> None:
        update_pixel_counts(self.counts, engine.state.output)

    def write(self, engine: Engine) -> None:
        if self.counts.hist is None:
            return
        folder = self.output_dir / f"epoch_{engine.state.epoch:03d}"
        hist = self.counts.hist.numpy()
        for c, lesion in enumerate(self.lesion_names[: hist.shape[0]]):
            recall, precision = precision_recall_points(hist[c, 1], hist[c, 0])
            aupr = trapezoid_auc(recall, precision)
            atomic_save_image(
                draw_pr_curve(recall, precision, f"{lesion} AUPR {aupr:.3f}"), folder / f"pr_{lesion}.png"
            )
            atomic_write_json(
                {
                    "thresholds": list(AUPR_THRESHOLDS) + [None],
                    "recall": recall.tolist(),
                    "precision": precision.tolist(),
                    "aupr": aupr,
                },
                folder / f"pr_{lesion}.json",
            )
