"""Ignite handler that draws the set-wide precision-recall curve of each lesion after validation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import ignite.distributed as idist
import numpy as np
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError
from PIL import Image

from monai_exudate.engines.samples import pred_label_present
from monai_exudate.metrics.ignite_metrics import PixelHistograms
from monai_exudate.metrics.pixel import AUPR_THRESHOLDS, precision_recall_points, trapezoid_auc
from monai_exudate.utils.atomic import atomic_save_image, atomic_write_json


def draw_pr_curve(
    recall: np.ndarray,
    precision: np.ndarray,
    title: str,
    thresholds: Sequence[float] = AUPR_THRESHOLDS,
    size_inches: float = 4.5,
    dpi: int = 100,
) -> Image.Image:
    """A precision-recall curve drawn with matplotlib: labelled axes, the points at each threshold, and two operating
    points marked: threshold 0.5 (the reported scores) and the F-maximising threshold (the operating threshold that
    validation stores). ``recall``/``precision`` are in ``thresholds`` order, plus the appended (0, 1) end point.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    figure = Figure(figsize=(size_inches, size_inches), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(recall, precision, "-o", color="#c81e1e", markersize=3, linewidth=1.5, label="PR curve")
    levels = np.asarray(list(thresholds), float)
    f_scores = 2 * precision[: len(levels)] * recall[: len(levels)]
    f_scores = np.divide(f_scores, precision[: len(levels)] + recall[: len(levels)], where=f_scores > 0, out=f_scores)
    best = int(np.argmax(f_scores))
    marks = [(best, "*", 14, f"F-max {f_scores[best]:.3f} at {levels[best]:.2f}")]
    half = np.flatnonzero(np.isclose(levels, 0.5))
    if half.size:
        marks.insert(0, (int(half[0]), "s", 8, f"F {f_scores[half[0]]:.3f} at 0.50"))
    for index, marker, size, label in marks:
        axes.plot(recall[index], precision[index], marker, markersize=size, color="#1f4e9c", label=label)
    axes.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    canvas = figure.canvas
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


class PRCurveHandler:
    """Accumulate 8-bit probability histograms during validation; at its end write a PR curve PNG and JSON per lesion.

    Files: ``output_dir/epoch_NNN/pr_<lesion>.png`` and ``.json`` (thresholds, recall, precision, AUPR). The histograms
    are a :class:`~monai_exudate.metrics.PixelHistograms` metric, reduced over ranks, so attach the handler on every
    rank of a multi-GPU run: the curve covers the whole validation set and only the main rank writes it.
    """

    def __init__(
        self, output_dir: str | os.PathLike, lesion_names: Sequence[str] = ("EX",), missing_masks: str = "negative"
    ) -> None:
        self.output_dir = Path(output_dir)
        self.lesion_names = list(lesion_names)
        self.histograms = PixelHistograms(
            output_transform=pred_label_present, missing_masks=missing_masks, num_channels=len(self.lesion_names)
        )

    def attach(self, engine: Engine) -> None:
        """Register the handler on an evaluator."""
        engine.add_event_handler(Events.STARTED, self.histograms.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.histograms.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def write(self, engine: Engine) -> None:
        try:
            hist = self.histograms.compute().numpy()  # a collective under DDP: every rank computes, the main one writes
        except NotComputableError:  # nothing was validated
            return
        if idist.get_rank() != 0:
            return
        folder = self.output_dir / f"epoch_{engine.state.epoch:03d}"
        for c, lesion in enumerate(self.lesion_names):
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
