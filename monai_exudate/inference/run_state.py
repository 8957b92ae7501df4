"""The outcome of an inference run, and its counters shared by the main loop and the writer threads."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_exudate.inference.summary import SummaryTable, table_name

logger = logging.getLogger(__name__)


@dataclass
class InferenceReport:
    """Outcome of a run: entries found, images written, images skipped because their outputs existed, failures.

    Every entry found ends in exactly one of the three: ``found == processed + skipped + len(failed)`` once the
    run completes.
    """

    processed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    output_dir: str = ""
    found: int = 0
    run_id: str = ""

    def __str__(self) -> str:
        text = (
            f"inference run {self.run_id}: {self.found} entries found: {self.processed} processed, "
            f"{self.skipped} skipped (already done), {len(self.failed)} failed; outputs in {self.output_dir}"
        )
        return text + "".join(f"\n  failed: {path}: {reason}" for path, reason in self.failed)


class RunState:
    """Counters, failures and the summary table of one run, shared by the main loop and the writer threads."""

    def __init__(
        self, output_dir: Path, table: SummaryTable, strict: bool, input_root: str | os.PathLike | None = None
    ) -> None:
        self.report = InferenceReport(output_dir=str(output_dir))
        self.table = table
        self.strict = strict
        self.input_root = input_root
        self.fatal: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def succeeded(self) -> None:
        with self._lock:
            self.report.processed += 1

    def fail(self, path: str, reason: str) -> None:
        logger.warning("skipped %s: %s", path, reason)
        with self._lock:
            self.report.failed.append((path, reason))
            if self.strict and self.fatal is None:
                self.fatal = (path, reason)
        # rows from an earlier run would describe outputs this run could not make
        self.table.remove(self.name(path))

    def name(self, path: str) -> str:
        """The table's name of the image at ``path`` (relative to the input folder when inside it)."""
        return table_name(path, self.input_root)

    def plan(
        self,
        items: Sequence[Mapping[str, Any] | str | os.PathLike],
        done: Any,
        lesion_names: Sequence[str],
        image_key: str = "image",
        overwrite: bool = False,
    ) -> list[dict[str, str]]:
        """Items still to segment. ``done(stem)`` says whether an image's output files are whole; an image whose files
        are whole and whose rows name every lesion is skipped (unless ``overwrite``); an output name (stem) taken by an
        earlier item of the run, or by another image of an earlier run (unless ``overwrite``), is a failure."""
        earlier = {Path(image).stem: image for image in self.table.images()}  # by table name
        owners: dict[str, str] = {}
        pending = []
        for item in items:
            path = str(item[image_key] if isinstance(item, Mapping) else item)
            stem = Path(path).stem
            if stem in owners:
                owner = owners[stem]
                self.fail(path, "listed twice" if owner == path else f"output name {stem!r} is already used by {owner}")
                continue
            name = self.name(path)
            previous = earlier.get(stem, name)
            if previous != name:
                if not overwrite:
                    table = self.table.path.name
                    self.fail(
                        path,
                        f"output name {stem!r} is already used by {previous} (earlier run, see {table}); "
                        "use another output_dir or overwrite",
                    )
                    continue
                self.table.remove(previous)
            owners[stem] = path
            finished = done(stem) and sorted(self.table.lesions_of(name)) == sorted(lesion_names)
            if finished and not overwrite:
                self.report.skipped += 1
            else:
                pending.append({image_key: path})
        return pending

    def raise_if_fatal(self) -> None:
        if self.fatal is not None:
            path, reason = self.fatal
            raise ValueError(f"{path}: {reason}")
