"""A legend drawn into an overlay's corner: each lesion's colour and name, the threshold and the model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["LESION_FULL_NAMES", "draw_legend", "lesion_thresholds"]

LESION_FULL_NAMES = {"EX": "hard exudates", "HE": "haemorrhages", "SE": "soft exudates", "MA": "microaneurysms"}


def lesion_thresholds(threshold: float | Sequence[float], lesion_names: Sequence[str]) -> list[float]:
    """One probability threshold per lesion from one for all or one per lesion (``ValueError`` naming the values
    when a count or a value is wrong)."""
    values = [threshold] * len(lesion_names) if isinstance(threshold, (int, float)) else list(threshold)
    if len(values) != len(lesion_names):
        raise ValueError(f"threshold: one value, or one per lesion {list(lesion_names)}, got {values}")
    values = [float(v) for v in values]
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"threshold must be in [0, 1], got {values}")
    return values


def draw_legend(
    overlay: np.ndarray,
    lesion_names: Sequence[str],
    colours: Sequence[Sequence[int]],
    threshold: float | Sequence[float],
    model: str,
) -> np.ndarray:
    """Return ``overlay`` (H, W, 3) with a legend box in its bottom-left corner.

    Fundus photographs leave their corners outside the circular field of view, so the box lies mostly on background
    (where the field of view reaches the bottom edge, as in IDRiD, it covers a thin strip of its rim). Lines: one
    swatch and name per lesion, then ``p > threshold`` and ``model``; with one threshold per lesion that differ, each
    lesion's line ends with its own ``p > t``. The text height is about 1.4% of the
    photograph's height (at least 10 pixels), so the legend reads the same at any size.
    """
    height, width = overlay.shape[:2]
    size = max(10, round(height / 70))
    font = _font(size)
    thresholds = lesion_thresholds(threshold, lesion_names)
    own = len(set(thresholds)) > 1
    lines = [(f"{name}  {LESION_FULL_NAMES.get(name.upper(), '')}".rstrip() + (f"  p > {t:.2f}" if own else ""),
              tuple(int(c) for c in colour)) for name, colour, t in zip(lesion_names, colours, thresholds)]  # fmt: skip
    lines += ([] if own else [(f"p > {thresholds[0]:.2f}", None)]) + [(model, None)]
    pad, swatch = size // 2, size
    image = Image.fromarray(np.ascontiguousarray(overlay, dtype=np.uint8))
    draw = ImageDraw.Draw(image, "RGBA")
    text_width = max(draw.textlength(text, font=font) for text, _ in lines)
    box_w = min(width, int(pad * 3 + swatch + text_width))
    box_h = min(height, int(pad + len(lines) * (size + pad)))
    top = height - box_h
    draw.rectangle((0, top, box_w, height), fill=(0, 0, 0, 190))
    for row, (text, colour) in enumerate(lines):
        y = top + pad + row * (size + pad)
        if colour is not None:
            draw.rectangle((pad, y, pad + swatch, y + size), fill=(*colour, 255))
        draw.text((pad * 2 + swatch, y), text, fill=(255, 255, 255, 255), font=font)
    return np.asarray(image)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
