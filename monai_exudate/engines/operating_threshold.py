"""Operating threshold: chosen on the validation split (F-maximising level) and stored beside the model; evaluation
applies the stored one (read by ``inference/threshold_file.py``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError

from monai_exudate.engines.samples import pred_label_present
from monai_exudate.inference.threshold_file import load_operating_threshold
from monai_exudate.metrics.ignite_metrics import PixelHistograms
from monai_exudate.metrics.pixel import counts_at_threshold, f_maximising_threshold, pixel_scores
from monai_exudate.utils.atomic import atomic_write_json
from monai_exudate.utils.json_values import json_round_trip

__all__ = ["OperatingThresholdHandler"]

MODES = ("select", "apply")


class OperatingThresholdHandler:
    """Pixel scores at an operating threshold beside the 0.5 ones, added to the evaluator's metrics per lesion.

    ``mode="select"`` (validation during training): the threshold is the F-maximising level of the set-wide
    8-bit histograms (:func:`~monai_exudate.metrics.pixel.f_maximising_threshold`) and it is written to ``path``
    whenever this validation is the best one so far by the evaluator's key metric, i.e. when the key-metric
    checkpoint ``model.pt`` is saved. ``mode="apply"`` (evaluation): the threshold is read from ``path`` (0.5 when
    the file is absent). Metrics added: ``<lesion>_threshold`` and ``<lesion>_{iou,sn,ppv,f}_at_threshold``.
    ``map_settings`` (e.g. the branch fusion and test-time flips of the evaluator's map) are written into the file
    beside the threshold; in ``apply`` mode a warning names those that differ from the file's.
    Written here because MONAI's and Ignite's metrics have a fixed threshold. The histograms are a
    :class:`~monai_exudate.metrics.PixelHistograms` metric, reduced over ranks: attach the handler on every rank of a
    multi-GPU run, so the threshold comes from the whole validation set; only the main rank writes the file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        lesion_names: Sequence[str] = ("EX",),
        mode: str = "select",
        missing_masks: str = "negative",
        map_settings: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        self.path = Path(path)
        self.lesion_names = list(lesion_names)
        self.mode = mode
        self.map_settings = None if map_settings is None else {k: json_round_trip(v) for k, v in map_settings.items()}
        self.histograms = PixelHistograms(
            output_transform=pred_label_present, missing_masks=missing_masks, num_channels=len(self.lesion_names)
        )

    def attach(self, engine: Engine) -> None:
        """Register the handler on an evaluator."""
        engine.add_event_handler(Events.STARTED, self.histograms.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.histograms.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.complete)

    def _thresholds(self, hist) -> list[tuple[float, float | None]]:
        if self.mode == "select":
            return [f_maximising_threshold(hist[c, 1], hist[c, 0]) for c in range(hist.shape[0])]
        stored = load_operating_threshold(self.path, map_settings=self.map_settings)
        stored = stored if isinstance(stored, list) else [stored] * hist.shape[0]
        if len(stored) != hist.shape[0]:
            raise ValueError(f"threshold file {self.path} holds {len(stored)} thresholds for {hist.shape[0]} lesions.")
        return [(t, None) for t in stored]

    def complete(self, engine: Engine) -> None:
        try:
            hist = self.histograms.compute().numpy()  # a collective under DDP: every rank computes the same thresholds
        except NotComputableError:  # nothing was validated
            return
        chosen = {}
        for c, (threshold, _) in enumerate(self._thresholds(hist)):
            lesion = self.lesion_names[c] if c < len(self.lesion_names) else str(c)
            scores = pixel_scores(*counts_at_threshold(hist[c, 1], hist[c, 0], threshold))
            engine.state.metrics[f"{lesion}_threshold"] = threshold
            for name in ("iou", "sn", "ppv", "f"):
                engine.state.metrics[f"{lesion}_{name}_at_threshold"] = scores[name]
            chosen[lesion] = threshold
        if self.mode == "select" and self._is_best(engine) and idist.get_rank() == 0:
            record = {"thresholds": chosen, "rule": "F-maximising level on the validation split"}
            if self.map_settings is not None:
                record["map_settings"] = self.map_settings
            atomic_write_json({**record, "epoch": int(engine.state.epoch)}, self.path)

    @staticmethod
    def _is_best(engine: Engine) -> bool:
        best_epoch = getattr(engine.state, "best_metric_epoch", None)
        if best_epoch is None or best_epoch < 0:  # no key metric: the latest validation is the one kept
            return True
        best = getattr(engine.state, "best_metric", None)
        return best_epoch == engine.state.epoch and (best is None or not math.isnan(float(best)))
