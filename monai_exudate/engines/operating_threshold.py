"""Operating threshold: chosen on the validation split (F-maximising level), stored beside the model, read back."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ignite.distributed as idist
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError

from monai_exudate.data.atomic import atomic_write_json
from monai_exudate.engines.utils import pred_label_present
from monai_exudate.metrics.ignite_metrics import PixelHistograms
from monai_exudate.metrics.pixel import counts_at_threshold, f_maximising_threshold, pixel_scores

__all__ = ["OperatingThresholdHandler", "load_operating_threshold", "recorded_map_setting"]

MODES = ("select", "apply")
logger = logging.getLogger(__name__)


def load_operating_threshold(
    path: str | os.PathLike | None, default: float = 0.5, map_settings: Mapping[str, Any] | None = None
) -> float | list[float]:
    """The stored threshold (one float, or one per lesion when several were stored); ``default`` when no file.

    ``map_settings``: the settings this run makes its probability map with (e.g. ``fusion``, ``tta_flip_axes``); a
    warning names each one that differs from the file's ``map_settings``, the map the threshold was chosen on (a
    level chosen on a flip-averaged map is not the F-maximising level of a single pass). Raises ValueError naming
    the file when it exists but is not a valid threshold file.
    """
    if path is None or not Path(path).is_file():
        return float(default)
    values, chosen_on = _read_record(path)
    if map_settings is not None:
        differing = [
            f"{name} {_jsonable(map_settings[name])} (chosen with {chosen_on[name]})"
            for name in sorted(set(chosen_on) & set(map_settings))
            if _jsonable(map_settings[name]) != chosen_on[name]
        ]
        if differing:
            logger.warning("threshold %s was chosen on another map than this run's: %s", path, "; ".join(differing))
    return values[0] if len(values) == 1 else values


def recorded_map_setting(path: str | os.PathLike | None, name: str, default: Any) -> Any:
    """The map setting ``name`` (e.g. ``tta_flip_axes``) the threshold in ``path`` was chosen with; ``default`` when
    there is no file or it records none (files written before the record existed).

    Inference takes its test-time flips from here, so a model runs as it was validated without the training overlay
    (and the MLflow model, which reads ``inference.json`` alone, makes the same map as the bundle's inference).
    Raises ValueError naming the file when it exists but is not a valid threshold file.
    """
    if path is None or not Path(path).is_file():
        return default
    return _read_record(path)[1].get(name, default)


def _read_record(path: str | os.PathLike) -> tuple[list[float], dict[str, Any]]:
    """The threshold file's thresholds (numbers in [0, 1], one per lesion) and its ``map_settings`` (``{}`` in files
    written before the record existed), checked."""
    try:
        record = json.loads(Path(path).read_text())
        values = [float(v) for v in record["thresholds"].values()]
        chosen_on = record.get("map_settings", {})
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"threshold file {path} is not valid: expected {{'thresholds': {{lesion: value}}}}") from err
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"threshold file {path}: thresholds must be numbers in [0, 1], got {values}.")
    if not isinstance(chosen_on, dict):
        raise ValueError(f"threshold file {path}: map_settings must be an object, got {chosen_on!r}.")
    return values, chosen_on


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so a setting compares equal to its record."""
    return json.loads(json.dumps(value))


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
        self.map_settings = None if map_settings is None else {k: _jsonable(v) for k, v in map_settings.items()}
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
