"""Small helpers shared by the handlers: iterate decollated samples, count their pixels, name them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def iter_samples(output: Any) -> Iterator[dict[str, Any]]:
    """Yield per-sample dicts from an engine output (a decollated list of dicts, or one batched dict)."""
    if isinstance(output, Mapping):
        batch = output.get("pred")
        size = len(batch) if batch is not None else 0
        for i in range(size):
            yield {k: v[i] for k, v in output.items() if hasattr(v, "__len__") and len(v) == size}
    else:
        yield from output


def update_pixel_counts(counts: Any, output: Any) -> None:
    """Add every sample of an engine output (``pred`` probabilities, ``label``, optional ``label_present``) to a
    ``PixelCounts`` accumulator; the PR-curve and operating-threshold handlers share this one path."""
    for sample in iter_samples(output):
        present = sample.get("label_present")
        counts.update(
            sample["pred"].detach()[None].float().clamp(0, 1),
            sample["label"].detach()[None].float(),
            None if present is None else present.reshape(1, -1),
        )


def sample_name(sample: Mapping[str, Any], index: int) -> str:
    """A file-name stem for a sample: the source image's stem, else its position."""
    meta = getattr(sample.get("image"), "meta", {}) or {}
    source = meta.get("filename_or_obj")
    if isinstance(source, (list, tuple)):
        source = source[0] if source else None
    return Path(str(source)).stem if source else f"sample_{index:04d}"
