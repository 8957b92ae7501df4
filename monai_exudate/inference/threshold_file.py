"""Read the operating threshold stored beside a model (``threshold.json``) and the map settings it was chosen on.

``engines/operating_threshold.py`` chooses and writes it during training; evaluation and inference read it here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_exudate.utils.json_values import json_round_trip

__all__ = ["load_operating_threshold", "recorded_map_setting"]

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
            f"{name} {json_round_trip(map_settings[name])} (chosen with {chosen_on[name]})"
            for name in sorted(set(chosen_on) & set(map_settings))
            if json_round_trip(map_settings[name]) != chosen_on[name]
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
