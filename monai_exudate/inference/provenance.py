"""What a model file is and where it came from, read from the provenance record training writes beside it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from monai_exudate.engines.provenance import PROVENANCE_FILE

__all__ = ["DEMO_MODEL_WARNING", "model_origin"]

logger = logging.getLogger(__name__)

DEMO_MODEL_WARNING = (
    "this model was trained only on the synthetic demo set: it shows that the pipeline runs, and its maps of real "
    "photographs are not meaningful (it marks optic discs and reflexes as lesions); train on your own photographs"
)


def model_origin(model_file: str | os.PathLike | None) -> dict[str, Any]:
    """The origin of the model in ``model_file``, from ``provenance.json`` beside it (``models/`` after training).

    Returns ``{"known": False}`` when there is no record (an exported model copied elsewhere, or weights from another
    source), else ``known``, ``synthetic``, ``trained_on`` ("the synthetic demo set" or the dataset folder),
    ``datalist_sha256``, ``images``, ``bundle``, ``version``, ``seed`` and ``git_commit``. A record that cannot be
    read raises ``ValueError`` naming the file.
    """
    if model_file is None:
        return {"known": False}
    path = Path(model_file).with_name(PROVENANCE_FILE)
    if not path.is_file():
        logger.info("no %s beside %s: the model's origin is unknown", PROVENANCE_FILE, model_file)
        return {"known": False}
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: the model's provenance record cannot be read ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: the model's provenance record must be a JSON object")
    synthetic = bool(record.get("synthetic"))
    return {
        "known": True,
        "synthetic": synthetic,
        "trained_on": "the synthetic demo set" if synthetic else record.get("dataset_dir"),
        "datalist_sha256": record.get("datalist_sha256"),
        "images": record.get("images"),
        "bundle": record.get("bundle"),
        "version": record.get("version"),
        "seed": record.get("seed"),
        "git_commit": record.get("git_commit"),
    }
