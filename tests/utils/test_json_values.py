"""JSON-ready values: tensors and numpy scalars become numbers, non-finite numbers null, tuples lists."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from monai_exudate.utils.json_values import json_round_trip, json_safe


def test_json_safe_turns_tensors_and_non_finite_numbers_into_strict_json():
    value = {"EX": {"f": torch.tensor(0.5), "n": np.int64(3), "nan": math.nan, "bins": (np.float32(1.5), math.inf)}}
    safe = json_safe(value)
    assert safe == {"EX": {"f": 0.5, "n": 3, "nan": None, "bins": [1.5, None]}}
    assert json.loads(json.dumps(safe, allow_nan=False)) == safe  # strict JSON: no NaN or Infinity token


def test_json_round_trip_reads_like_the_record():
    settings = {"tta_flip_axes": (0, 1), "fusion": "logits"}
    assert json_round_trip(settings) == {"tta_flip_axes": [0, 1], "fusion": "logits"}
