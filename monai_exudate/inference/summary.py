"""The per-image lesion table of an inference run (summary.csv), kept on disk as images complete."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_exudate.inference.quantify import RUN_FIELDS, SUMMARY_FIELDS
from monai_exudate.inference.writers import read_csv
from monai_exudate.utils.atomic import write_csv_atomic

RANK_TABLE_PATTERN = ".summary.rank*.csv"


class SummaryTable:
    """Rows of ``summary.csv`` by image, loaded from an earlier run and rewritten atomically as images complete.

    Each ``update`` rewrites the file unless the last rewrite was recent compared with its own duration
    (``cost_factor`` times it): small runs save after every image, runs of many thousand images spend at most
    about ``1 / cost_factor`` of their time on the table. Safe to use from several threads.
    """

    def __init__(self, path: str | os.PathLike, cost_factor: float = 10.0) -> None:
        self.path = Path(path)
        self.cost_factor = cost_factor
        self._rows: dict[str, list[dict[str, object]]] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._next_write = 0.0
        if self.path.is_file():
            for row in read_csv(self.path, SUMMARY_FIELDS, optional=RUN_FIELDS):
                self._rows.setdefault(row["image"], []).append(row)

    def images(self) -> list[str]:
        """Images with rows."""
        with self._lock:
            return list(self._rows)

    def lesions_of(self, image: str) -> list[str]:
        """Lesion names recorded for ``image`` (empty when it has no rows)."""
        with self._lock:
            return [str(r["lesion"]) for r in self._rows.get(image, [])]

    def rows(self) -> list[dict[str, object]]:
        """All rows, by image path then in recorded lesion order."""
        with self._lock:
            return [row for image in sorted(self._rows) for row in self._rows[image]]

    def update(self, image: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Replace the rows of ``image`` and save the table unless a save happened very recently."""
        with self._lock:
            self._rows[image] = [dict(r) for r in rows]
            self._dirty = True
        self.flush(force=False)

    def remove(self, image: str) -> None:
        """Drop the rows of ``image`` (saved with the next flush)."""
        with self._lock:
            if self._rows.pop(image, None) is not None:
                self._dirty = True

    def absorb_rank_tables(self) -> int:
        """Move the rows in the rank tables beside this table (``rank_table_path``) into it and delete those files.

        Rows of later ranks replace an image's earlier rows. The table is saved before the files are deleted, so a
        process killed in between finds the rows again (absorbing twice changes nothing): the photographs a killed
        job finished count as done on its re-run. Returns the number of images absorbed.
        """
        found = sorted(self.path.parent.glob(RANK_TABLE_PATTERN), key=lambda p: p.name)
        images = 0
        for path in found:
            rows: dict[str, list[dict[str, object]]] = {}
            for row in read_csv(path, SUMMARY_FIELDS, optional=RUN_FIELDS):
                rows.setdefault(str(row["image"]), []).append(row)
            with self._lock:
                self._rows.update(rows)
                self._dirty = self._dirty or bool(rows)
            images += len(rows)
        self.flush()
        for path in found:
            path.unlink(missing_ok=True)
        return images

    def flush(self, force: bool = True) -> None:
        """Rewrite the CSV atomically if rows changed since the last save (``force=False`` honours the pacing)."""
        with self._lock:
            if not self._dirty or (not force and time.monotonic() < self._next_write):
                return
            start = time.monotonic()
            rows = [row for image in sorted(self._rows) for row in self._rows[image]]
            write_csv_atomic(self.path, SUMMARY_FIELDS, rows)
            self._dirty = False
            now = time.monotonic()
            self._next_write = now + self.cost_factor * (now - start)


def rank_table_path(folder: str | os.PathLike, rank: int) -> Path:
    """Where rank ``rank`` (> 0) of a sharded job keeps its rows until the main rank merges them into summary.csv."""
    return Path(folder) / f".summary.rank{int(rank)}.csv"


def table_name(path: str | os.PathLike, input_root: str | os.PathLike | None) -> str:
    """How ``summary.csv`` names the image at ``path``: relative to ``input_root`` (the folder inference read, or the
    folder of the file it read) when the image lies inside it, else the path as given."""
    if input_root is None:
        return str(path)
    root = Path(input_root).resolve()
    root = root.parent if root.is_file() else root
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def model_columns(provenance: Mapping[str, object], model_file: str | os.PathLike | None) -> dict:
    """The run columns of ``summary.csv`` but the threshold (each lesion's own) and the time: the model (bundle,
    version, file) and its origin."""
    parts = [str(provenance.get(k)) for k in ("bundle", "version") if provenance.get(k)]
    if model_file is not None:
        parts.append(Path(model_file).name)
    origin = provenance.get("model")
    if not isinstance(origin, Mapping) or not origin.get("known"):
        described = "unknown"
    elif origin.get("synthetic"):
        described = "synthetic demo set"
    elif origin.get("name"):
        described = str(origin["name"])
    else:
        described = str(origin.get("trained_on"))
    return {"model": " ".join(parts) or "unknown", "model_origin": described}
