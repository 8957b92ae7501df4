"""Atomic file writes: a temporary file beside the target, then a rename, so no reader sees a half-written file."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

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


def remove_partial_files(folder: str | os.PathLike) -> int:
    """Delete temporary files an interrupted run left in ``folder``; return how many."""
    removed = 0
    for p in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
        if p.is_file():
            p.unlink()
            removed += 1
    return removed
