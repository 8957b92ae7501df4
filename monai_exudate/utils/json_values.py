"""Values as JSON holds them: tensors and numpy scalars as numbers, non-finite numbers as null, tuples as lists."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["json_round_trip", "json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with every tensor or numpy scalar turned into its number and NaN/infinity into None, containers kept.

    NaN and infinity are not valid JSON: a reader other than Python's ``json`` refuses the file.
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # tensor or numpy scalar: convert, then apply the non-finite rule below
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_round_trip(value: Any) -> Any:
    """``value`` as it reads back from a JSON file (tuples become lists), so a setting compares equal to its record."""
    return json.loads(json.dumps(value))
