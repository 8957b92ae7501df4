"""Find NaN or infinite values in a (nested) state dict; the error raised for non-finite weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class NonFiniteWeightsError(FloatingPointError):
    """Raised when weights (or optimizer state) about to be saved or loaded hold NaN or infinite values."""


def nonfinite_entries(state: Any, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in ``state`` (nested dicts, lists, tuples) with a NaN or inf."""
    if isinstance(state, torch.Tensor):
        bad = state.is_floating_point() or state.is_complex()
        return [prefix or "<tensor>"] if bad and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, Mapping):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    found = []
    for key, value in items:
        found += nonfinite_entries(value, f"{prefix}.{key}" if prefix else str(key))
    return found


def describe(entries: list[str], limit: int = 5) -> str:
    """A short list of offending names for an error message."""
    shown = ", ".join(entries[:limit])
    return shown + (f" and {len(entries) - limit} more" if len(entries) > limit else "")
