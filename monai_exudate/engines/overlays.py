"""Ignite handler that writes colour overlays of validation predictions (TP yellow, FP red, FN green)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from PIL import Image

from monai_exudate.engines.samples import iter_samples, sample_name
from monai_exudate.utils.atomic import atomic_save_image

TP_COLOUR = (255, 255, 0)
FP_COLOUR = (255, 0, 0)
FN_COLOUR = (0, 255, 0)


def overlay_errors(image: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Paint true positives yellow, false positives red and false negatives green on an RGB uint8 image (H, W, 3)."""
    out = image.copy()
    out[pred & truth] = TP_COLOUR
    out[pred & ~truth] = FP_COLOUR
    out[~pred & truth] = FN_COLOUR
    return out


def to_display(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo intensity normalisation of a (3, W, H) tensor and return an (H, W, 3) uint8 array."""
    img = image.detach().float().cpu()
    img = img * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    # MONAI's PIL reader orders space as (width, height): transpose back to rows first
    return img.clamp(0, 255).byte().permute(2, 1, 0).numpy()


class ValidationOverlayHandler:
    """At the end of each validation, write overlays of the first ``num_images`` images for every lesion channel.

    Files go to ``output_dir/epoch_NNN/<image>_<lesion>.png`` (downscaled so the long side is ``max_side``), where
    the MLflow handler picks them up as artifacts.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        lesion_names: Sequence[str] = ("EX",),
        num_images: int = 4,
        threshold: float = 0.5,
        image_mean: Sequence[float] = (0.0, 0.0, 0.0),
        image_std: Sequence[float] = (1.0, 1.0, 1.0),
        max_side: int = 1024,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.lesion_names = list(lesion_names)
        self.num_images = num_images
        self.threshold = threshold
        self.mean, self.std = list(image_mean), list(image_std)
        self.max_side = max_side
        self._seen = 0

    def attach(self, engine: Engine) -> None:
        """Register the handler on an evaluator."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _reset(self, engine: Engine) -> None:
        self._seen = 0

    def __call__(self, engine: Engine) -> None:
        if self._seen >= self.num_images:
            return
        folder = self.output_dir / f"epoch_{engine.state.epoch:03d}"
        for sample in iter_samples(engine.state.output):
            if self._seen >= self.num_images:
                return
            self._seen += 1
            self.write(sample, folder)

    def write(self, sample: dict[str, Any], folder: Path) -> list[Path]:
        """Write the overlays of one sample (dict with image, pred, label) into ``folder``."""
        image = to_display(sample["image"], self.mean, self.std)
        pred = (sample["pred"].detach().float().cpu() > self.threshold).permute(0, 2, 1).numpy()
        truth = (sample["label"].detach().float().cpu() > 0.5).permute(0, 2, 1).numpy()
        name = sample_name(sample, self._seen)
        written = []
        for c, lesion in enumerate(self.lesion_names[: pred.shape[0]]):
            picture = Image.fromarray(overlay_errors(image, pred[c], truth[c]))
            picture.thumbnail((self.max_side, self.max_side), Image.NEAREST)
            written.append(atomic_save_image(picture, folder / f"{name}_{lesion}.png"))
        return written
