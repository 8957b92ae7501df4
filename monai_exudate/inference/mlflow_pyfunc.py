"""A trained bundle model as an MLflow pyfunc model: photographs in, per-lesion probability maps out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.types.schema import AnyType, Array, ColSpec, DataType, Schema

from monai_exudate.inference.predictor import FundusPredictor

__all__ = ["IMAGE_COLUMN", "FundusLesionModel", "model_signature", "photo_inputs"]

IMAGE_COLUMN = "image"


class FundusLesionModel(mlflow.pyfunc.PythonModel):
    """The bundle's inference chain behind MLflow's ``predict``: preprocessing, network and inversion inside.

    Input: photographs in the ``image`` column (a DataFrame, a dict of lists, or one photograph): a file path the
    model can read, the bytes of an image file base64-encoded (what a request to ``mlflow models serve`` carries),
    or an ``(H, W, 3)`` uint8 RGB array. Output: a DataFrame with one row per photograph and one column per lesion,
    each cell the lesion's ``(H, W)`` float32 probabilities at the photograph's own size, as the bundle's
    ``inference.json`` computes them (its probability PNGs are these maps in 8-bit levels).

    Artifacts: ``bundle`` (a folder with the bundle's ``configs``) and ``model`` (the folder with ``model.pt`` and
    the ``model_package.json`` that gives the network and geometry).
    """

    def load_context(self, context: Any) -> None:
        bundle = Path(context.artifacts["bundle"])
        model = Path(context.artifacts["model"])
        overrides = {
            "bundle_root": str(bundle),
            "ckpt_dir": str(model),
            "ckpt_path": str(model / "model.pt"),
            "exported_model": None,
        }
        self.predictor = FundusPredictor.from_bundle(
            bundle / "configs" / "inference.json", overrides, meta_file=str(bundle / "configs" / "metadata.json")
        )

    def predict(self, context, model_input, params=None):  # noqa: ANN001 - MLflow reads type hints as a schema
        """Per-lesion probability maps of each photograph in ``model_input`` (see the class docstring)."""
        maps = [self.predictor.predict(photo) for photo in photo_inputs(model_input)]
        lesions = self.predictor.lesion_names
        return pd.DataFrame({lesion: [m[c] for m in maps] for c, lesion in enumerate(lesions)}, columns=lesions)


def photo_inputs(model_input: Any) -> list[Any]:
    """The photographs of a model input: the ``image`` column of a DataFrame or dict, a list, or one photograph."""
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise ValueError(f"the input has no {IMAGE_COLUMN!r} column (it has {list(model_input.columns)})")
        return list(model_input[IMAGE_COLUMN])
    if isinstance(model_input, dict):
        if IMAGE_COLUMN not in model_input:
            raise ValueError(f"the input has no {IMAGE_COLUMN!r} entry (it has {sorted(model_input)})")
        value = model_input[IMAGE_COLUMN]
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(model_input, np.ndarray) and model_input.ndim == 3:
        return [model_input]
    if isinstance(model_input, (list, tuple)):
        return list(model_input)
    if isinstance(model_input, (str, bytes, os.PathLike)):
        return [model_input]
    raise ValueError(f"cannot read photographs from a {type(model_input).__name__}")


def model_signature(lesion_names: list[str]) -> mlflow.models.ModelSignature:
    """Input: the ``image`` column (path, base64 image bytes or array); output: one float map per lesion."""
    inputs = Schema([ColSpec(AnyType(), IMAGE_COLUMN)])
    outputs = Schema([ColSpec(Array(Array(DataType.float)), lesion) for lesion in lesion_names])
    return mlflow.models.ModelSignature(inputs=inputs, outputs=outputs)
