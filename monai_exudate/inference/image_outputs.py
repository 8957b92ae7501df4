"""One photograph's output files from its 8-bit maps: probability and mask PNGs, the overlay, the NIfTI maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_exudate.inference.legend import lesion_thresholds
from monai_exudate.inference.writers import (
    OutputLayout,
    compose_overlay,
    encode_jpeg,
    encode_nifti,
    encode_png,
    lesion_colours,
)
from monai_exudate.utils.atomic import atomic_write_bytes

__all__ = ["ImageOutputs", "model_line"]


def model_line(network: torch.nn.Module, provenance: Mapping[str, Any]) -> str:
    """The overlay legend's model line: the network's class and where the model came from (``provenance["model"]``,
    :func:`~monai_exudate.inference.model_origin`)."""
    origin = provenance.get("model")
    name = getattr(network, "original_name", None) or type(network).__name__
    if not isinstance(origin, Mapping) or not origin.get("known"):
        return f"{name}, origin unknown"
    if origin.get("synthetic"):
        return f"{name}, DEMO: synthetic data only"
    if origin.get("name"):
        return str(origin["name"])
    return f"{name}, trained on {Path(str(origin.get('trained_on'))).name}"


class ImageOutputs:
    """Write one photograph's files from its 8-bit probability levels ``q = round(p * 255)``, (C, H, W).

    Masks follow the metrics' rule ``q / 255 > threshold`` (each lesion's own threshold when one per lesion is given),
    computed as one integer comparison per channel, ``q > mask_above[c]``.
    The overlay paints each lesion's mask in its colour (``writers.lesion_colours``) over the photograph, with the
    legend (``legend.draw_legend``) and, on request, the untouched photograph beside it. Every file is written
    atomically. It holds no state between images, so the runner's writer threads share one instance.

    Args:
        layout: where each file goes.
        lesion_names: one per channel of the levels.
        threshold: probability threshold of the masks, one for every lesion or one per lesion.
        formats: subset of ``("prob", "mask", "overlay")``.
        overlay_alpha: opacity of the lesion colours.
        overlay_format: "png" or "jpeg".
        overlay_legend: draw the legend.
        overlay_side_by_side: the photograph left of the painted one.
        legend_model: the legend's model line (:func:`model_line`).
        png_compress_level: zlib level of the PNGs.
    """

    def __init__(
        self,
        layout: OutputLayout,
        lesion_names: Sequence[str],
        threshold: float | Sequence[float],
        formats: Sequence[str],
        overlay_alpha: float = 0.5,
        overlay_format: str = "png",
        overlay_legend: bool = True,
        overlay_side_by_side: bool = False,
        legend_model: str = "",
        png_compress_level: int = 1,
    ) -> None:
        self.layout = layout
        self.lesion_names = list(lesion_names)
        self.thresholds = lesion_thresholds(threshold, self.lesion_names)
        self.formats = tuple(formats)
        self.overlay_alpha = float(overlay_alpha)
        self.overlay_format = overlay_format
        self.overlay_legend = bool(overlay_legend)
        self.overlay_side_by_side = bool(overlay_side_by_side)
        self.legend_model = legend_model
        self.png_compress_level = int(png_compress_level)
        self.colours = lesion_colours(self.lesion_names)
        levels = np.arange(256) / 255.0
        self.mask_above = np.array([np.count_nonzero(levels <= t) - 1 for t in self.thresholds])[:, None, None]

    def write(
        self, stem: str, levels: np.ndarray, volume: np.ndarray | None, original: torch.Tensor | None
    ) -> np.ndarray:
        """Write the files of the photograph ``stem`` (``original``: its pixels (3, W, H), for the overlay; the float
        maps ``volume`` (C, H, W) for NIfTI, when asked) and return its masks (C, H, W), bool."""
        masks = levels > self.mask_above
        level = self.png_compress_level
        for c, lesion in enumerate(self.lesion_names):
            if "prob" in self.formats:
                atomic_write_bytes(self.layout.prob(stem, lesion), encode_png(levels[c], level))
            if "mask" in self.formats:
                mask_png = encode_png(masks[c].astype(np.uint8) * np.uint8(255), level)
                atomic_write_bytes(self.layout.mask(stem, lesion), mask_png)
        if "overlay" in self.formats and original is not None:
            legend = {"lesion_names": self.lesion_names, "threshold": self.thresholds, "model": self.legend_model}
            overlay = compose_overlay(
                original.numpy().transpose(2, 1, 0), masks, self.colours, self.overlay_alpha,
                legend if self.overlay_legend else None, self.overlay_side_by_side,
            )  # fmt: skip
            data = encode_png(overlay, level) if self.overlay_format == "png" else encode_jpeg(overlay)
            atomic_write_bytes(self.layout.overlay(stem), data)
        if volume is not None:
            atomic_write_bytes(self.layout.nifti_prob(stem), encode_nifti(volume, self.lesion_names))
        return masks
