"""Atomic file writes: a temporary file beside the target, then a rename, so no reader sees a half-written file.

The one place the package writes files from (bytes, JSON, images, CSV tables); checkpoints go through Ignite's own
atomic saver (``engines/checkpoint_saver.py``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

PARTIAL_SUFFIX = ".partial"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it, so ``path`` is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name opened exclusively, not mkstemp: the file gets the usual permissions (umask), not 0600
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write indented JSON (numbers of other types as floats) through a temporary file and a rename."""
    return atomic_write_bytes(path, (json.dumps(data, indent=2, default=float) + "\n").encode())


def atomic_save_image(image: Image.Image, path: str | os.PathLike, **save_kwargs: Any) -> Path:
    """Save a PIL image (format from the suffix unless ``format`` is given) through a temporary file and a rename."""
    path = Path(path)
    buffer = io.BytesIO()
    fmt = save_kwargs.pop("format", None) or Image.registered_extensions()[path.suffix.lower()]
    image.save(buffer, format=fmt, **save_kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


def write_csv_atomic(path: str | os.PathLike, fieldnames: Sequence[str], rows: Iterable[Mapping[str, object]]) -> Path:
    """Write a CSV table (header first) through a temporary file and a rename."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def remove_partial_files(folder: str | os.PathLike) -> int:
    """Delete temporary files an interrupted run left in ``folder``; return how many."""
    removed = 0
    for p in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
        if p.is_file():
            p.unlink()
            removed += 1
    return removed
