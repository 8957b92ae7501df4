"""Small helpers shared by the handlers: iterate decollated samples, count their pixels, name them, write files."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from monai_exudate.data.atomic import atomic_write_bytes


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


def atomic_save_image(image: Image.Image, path: str | os.PathLike, **save_kwargs: Any) -> Path:
    """Save a PIL image through a temporary file and a rename, so no half-written file is ever visible."""
    path = Path(path)
    buffer = io.BytesIO()
    fmt = save_kwargs.pop("format", None) or Image.registered_extensions()[path.suffix.lower()]
    image.save(buffer, format=fmt, **save_kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write JSON through a temporary file and a rename."""
    return atomic_write_bytes(path, (json.dumps(data, indent=2, default=float) + "\n").encode())
