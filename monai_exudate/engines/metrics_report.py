"""Ignite handler that writes an evaluator's metrics (including nested reports) to a JSON file."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from ignite.engine import Engine, Events

from monai_exudate.data.atomic import atomic_write_json


def _json_safe(value):
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # tensor or numpy scalar: convert, then apply the non-finite rule below
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):  # NaN and infinity are not valid JSON
        return None
    return value


class MetricsReportWriter:
    """Write ``engine.state.metrics`` to ``path`` as JSON when the evaluator completes (atomically).

    Why not MONAI's ``MetricsSaver``: it writes one ``name value`` line per metric to ``metrics.csv`` and per-image
    buffers of MONAI ``Cumulative`` metrics. The evaluation report is nested (per lesion: pixel scores, region scores
    per sigma, recall per size bin with counts, and the means), 50 values for one lesion and 167 for
    HRDecoder's four, with ``None`` for an empty size bin; JSON keeps that structure, and the file is replaced
    atomically so a reader never sees half a report.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def attach(self, engine: Engine) -> None:
        """Register the handler on an evaluator."""
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        atomic_write_json(_json_safe(dict(engine.state.metrics)), self.path)
