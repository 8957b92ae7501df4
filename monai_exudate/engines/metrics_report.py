"""Ignite handler that writes an evaluator's metrics (including nested reports) to a JSON file."""

from __future__ import annotations

import os
from pathlib import Path

from ignite.engine import Engine, Events

from monai_exudate.utils.atomic import atomic_write_json
from monai_exudate.utils.json_values import json_safe


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
        atomic_write_json(json_safe(dict(engine.state.metrics)), self.path)
