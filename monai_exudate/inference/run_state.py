"""The outcome of an inference run, and its counters shared by the main loop and the writer threads."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from monai_exudate.inference.summary import SummaryTable

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

    def __init__(self, output_dir: Path, table: SummaryTable, strict: bool) -> None:
        self.report = InferenceReport(output_dir=str(output_dir))
        self.table = table
        self.strict = strict
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
        self.table.remove(path)  # rows from an earlier run would describe outputs this run could not make

    def raise_if_fatal(self) -> None:
        if self.fatal is not None:
            path, reason = self.fatal
            raise ValueError(f"{path}: {reason}")
